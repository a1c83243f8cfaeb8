"""Which source codec may be stream-copied into which output container.

One table, established by tests/test_media_compat.py: every pair marked as copy is muxed by the
engine and the result decoded with both FFmpeg (PyAV) and GStreamer. Pairs left out are
transcoded (video to H.264, audio to AAC) and the reason is reported to the user.
"""

from __future__ import annotations

FORMATS = ("mp4", "avi", "flv", "mov", "asf", "mkv")

MUXER = {"mp4": "mp4", "avi": "avi", "flv": "flv", "mov": "mov", "asf": "asf", "mkv": "matroska"}

# Containers whose H.264 must be an Annex B byte stream (start codes, in-band SPS/PPS).
NEEDS_ANNEXB = frozenset({"avi", "asf"})

# Containers whose FFmpeg muxer/demuxer pair loses the presentation times of B-frames: the
# frames survive but play up to two frames off the audio. Reordered video is transcoded.
NO_REORDER = {
    "asf": "FFmpeg's asf keeps only decode times, so B-frames would play out of sync",
}

# codec -> containers it is stream-copied into; other pairs are transcoded (see REASONS).
COPY = {
    "h264": {"mp4", "mov", "mkv", "avi", "asf", "flv"},
    "hevc": {"mp4", "mov", "mkv"},
    "mjpeg": {"mp4", "mov", "mkv", "avi", "asf"},
    "aac": {"mp4", "mov", "mkv", "flv", "avi", "asf"},
    "pcm_s16le": {"mov", "mkv", "avi", "asf"},
    "pcm_mulaw": {"mov", "avi"},
    "pcm_alaw": {"mov", "avi"},
}

# Codecs whose exact cut needs no re-encoding (every frame is a keyframe) or that the engine
# can smart-cut (re-encode only the partial GOP at each end, with libx264 / libx265).
INTRA_ONLY = frozenset({"mjpeg"})
SMART_CUT = frozenset({"h264", "hevc"})

# (codec, container) -> why it is transcoded, as reported to the user.
REASONS = {
    ("hevc", "flv"): "flv does not carry hevc (enhanced FLV is rejected by many players)",
    ("hevc", "avi"): "FFmpeg's avi muxer does not carry hevc",
    ("hevc", "asf"): "FFmpeg's asf muxer does not carry hevc",
    ("mjpeg", "flv"): "flv does not carry mjpeg",
    ("pcm_s16le", "mp4"): "GStreamer does not play PCM from mp4, and browsers want AAC",
    ("pcm_mulaw", "mp4"): "mp4 gets AAC so browsers play it",
    ("pcm_alaw", "mp4"): "mp4 gets AAC so browsers play it",
    ("pcm_mulaw", "mkv"): "matroska has no G.711 codec id",
    ("pcm_alaw", "mkv"): "matroska has no G.711 codec id",
    ("pcm_mulaw", "asf"): "GStreamer does not decode G.711 from asf",
    ("pcm_alaw", "asf"): "GStreamer does not decode G.711 from asf",
    # Tried: FFmpeg's flv muxer kills the whole process (abort) on 16 kHz PCM and 8 kHz G.711.
    ("pcm_s16le", "flv"): "FFmpeg's flv muxer aborts on PCM at camera sample rates",
    ("pcm_mulaw", "flv"): "FFmpeg's flv muxer aborts on G.711",
    ("pcm_alaw", "flv"): "FFmpeg's flv muxer aborts on G.711",
}


def can_copy(codec: str, fmt: str) -> bool:
    """True when `codec` may be stream-copied into container `fmt`."""
    return fmt in COPY.get(codec, set())


def copy_refusal(codec: str, fmt: str) -> str:
    """A short reason why `codec` is transcoded for `fmt`."""
    return REASONS.get((codec, fmt), f"{fmt} does not carry {codec}")
