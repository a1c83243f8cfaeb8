"""The GStreamer elements the decode checks plug, and the Debian package providing each.

Imports nothing, so `.ci/run` can print the table with the system Python before any virtualenv
exists (`python3 tests/gst_packages.py`) and install GStreamer by element, not only by
`gst-launch-1.0`: a machine can have the tools without, say, the "ugly" set (asfdemux).
"""

GST_PACKAGES = {
    "filesrc": "gstreamer1.0-tools",  # core elements come with the tools' library
    "decodebin": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "videoscale": "gstreamer1.0-plugins-base",
    "audioconvert": "gstreamer1.0-plugins-base",
    "audioresample": "gstreamer1.0-plugins-base",
    "qtdemux": "gstreamer1.0-plugins-good",
    "matroskademux": "gstreamer1.0-plugins-good",
    "avidemux": "gstreamer1.0-plugins-good",
    "flvdemux": "gstreamer1.0-plugins-good",
    "jpegdec": "gstreamer1.0-plugins-good",
    "aacparse": "gstreamer1.0-plugins-good",
    "mulawdec": "gstreamer1.0-plugins-good",
    "alawdec": "gstreamer1.0-plugins-good",
    "asfdemux": "gstreamer1.0-plugins-ugly",
    "tsdemux": "gstreamer1.0-plugins-bad",
    "h264parse": "gstreamer1.0-plugins-bad",
    "h265parse": "gstreamer1.0-plugins-bad",
    "avdec_h264": "gstreamer1.0-libav",
    "avdec_h265": "gstreamer1.0-libav",
    "avdec_aac": "gstreamer1.0-libav",
}

if __name__ == "__main__":
    for element, package in GST_PACKAGES.items():
        print(f"{element}:{package}")
