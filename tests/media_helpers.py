"""Decode exported files back to (time, recorded wall time) pairs, with PyAV and GStreamer."""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from exports.media import synth
from tests.gst_packages import GST_PACKAGES

GST_LAUNCH = shutil.which("gst-launch-1.0")
GST_INSPECT = shutil.which("gst-inspect-1.0")
_DEMUXERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "qtdemux",
    "matroska,webm": "matroskademux",
    "avi": "avidemux",
    "flv": "flvdemux",
    "asf": "asfdemux",
    "mpegts": "tsdemux",
}
_DECODERS = {
    "h264": ("h264parse", "avdec_h264"),
    "hevc": ("h265parse", "avdec_h265"),
    "mjpeg": ("jpegdec",),
    "aac": ("aacparse", "avdec_aac"),
    "pcm_mulaw": ("mulawdec",),
    "pcm_alaw": ("alawdec",),
}
# Junk that no demuxer accepts. Random bytes won't do: now and then (about 1 in 200) FFmpeg
# probes them as a valid stream.
NOT_A_RECORDING = b"not a recording: the recorder crashed while writing this file\n" * 100


@dataclass
class Decoded:
    format_name: str
    video_codec: str | None
    audio_codec: str | None
    times: list[float]  # presentation time of each video frame, seconds
    walls: list[datetime]  # wall time each frame shows
    audio: np.ndarray | None  # mono samples placed on the output timeline
    audio_start: float  # output time of audio[0]
    sample_rate: int
    duration: float | None


def decode_with_pyav(path: Path) -> Decoded:
    """Every video frame's time and shown wall time, and the audio on the output timeline."""
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        astream = container.streams.audio[0] if container.streams.audio else None
        times, walls = [], []
        for frame in container.decode(vstream):
            times.append(float(frame.pts * frame.time_base))
            walls.append(synth.frame_wall_time(frame.to_ndarray(format="gray")))
        duration = container.duration / 1e6 if container.duration else None
        format_name = container.format.name
        if format_name == "avi":
            # AVI has no timestamps: frame i is shown at i / rate. (FFmpeg's avi demuxer stamps
            # H.264 frames one frame late, also in files FFmpeg writes itself.)
            rate = vstream.average_rate or vstream.guessed_rate
            times = [float(i / rate) for i in range(len(times))]
        elif format_name == "asf":
            # AVI stores no presentation times and FFmpeg's asf muxer stores decode times: frames
            # come out stamped with decode-order times, which a player shows in output order,
            # so compare them as a set.
            times.sort()
        vcodec = vstream.codec_context.name
    audio, audio_start, rate, acodec = None, 0.0, 0, None
    if astream is not None:
        audio, audio_start, rate, acodec = _decode_audio(path)
    return Decoded(format_name, vcodec, acodec, times, walls, audio, audio_start, rate, duration)


def _decode_audio(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        acodec = stream.codec_context.name
        pieces = []
        for frame in container.decode(stream):
            samples = frame.to_ndarray().astype(np.float32)
            if frame.format.name.startswith("s16"):
                samples = samples / 32768.0
            samples = samples.reshape(-1, frame.samples)[0] if frame.format.is_planar else (
                samples.reshape(frame.samples, -1)[:, 0]
            )
            start = float(frame.pts * frame.time_base) if frame.pts is not None else None
            pieces.append((start, samples))
    if not pieces:
        return None, 0.0, rate, acodec
    first = pieces[0][0] or 0.0
    total = []
    position = 0
    for start, samples in pieces:
        at = round(((start if start is not None else first) - first) * rate)
        if start is not None and at > position:
            total.append(np.zeros(at - position, dtype=np.float32))
            position = at
        total.append(samples)
        position += len(samples)
    return np.concatenate(total), first, rate, acodec


@functools.cache
def gst_has(element: str) -> bool:
    """True when GStreamer (gst-inspect-1.0) knows `element`."""
    if GST_INSPECT is None:
        return False
    return subprocess.run([GST_INSPECT, "--exists", element], capture_output=True).returncode == 0


def gst_elements_for(path: Path) -> list[str]:
    """The GStreamer elements a decode check of `path` plugs: demuxer, parsers, decoders."""
    needed = ["filesrc", "decodebin", "videoconvert", "videoscale", "audioconvert",
              "audioresample"]
    with av.open(str(path)) as container:
        needed.append(_DEMUXERS.get(container.format.name, "decodebin"))
        for stream in (*container.streams.video, *container.streams.audio):
            needed += _DECODERS.get(stream.codec_context.name, ())
    return needed


def require_gstreamer_for(path: Path) -> None:
    """Skip the calling test, saying what to install, when GStreamer cannot decode `path`."""
    for tool, path_found in (("gst-launch-1.0", GST_LAUNCH), ("gst-inspect-1.0", GST_INSPECT)):
        if path_found is None:
            pytest.skip(f"{tool} is not installed (Debian: gstreamer1.0-tools)")
    missing = [name for name in gst_elements_for(path) if not gst_has(name)]
    if missing:
        packages = sorted({GST_PACKAGES.get(name, "?") for name in missing})
        pytest.skip(f"GStreamer lacks {', '.join(missing)} (Debian: {', '.join(packages)})")


def run_gst_launch(*pipeline: str, attempts: int = 3, timeout: float = 20) -> None:
    """Run a gst-launch-1.0 pipeline to EOS; a run that hangs is started again.

    GStreamer 1.22's gst-launch sometimes never finishes a tiny file: the pipeline prerolls,
    goes to PLAYING, the demuxer reaches EOS, and no EOS message ever arrives (seen about once
    in 25-40 runs of the same flv on a loaded machine, with GST_DEBUG=3 showing nothing else).
    The same file decodes every other time, so a hang is retried; an error is not.
    """
    for attempt in range(1, attempts + 1):
        try:
            done = subprocess.run(
                [GST_LAUNCH, "-q", *pipeline], timeout=timeout, capture_output=True, text=True
            )
        except subprocess.TimeoutExpired:
            if attempt == attempts:
                raise
            continue
        # GStreamer's own words (e.g. "Failed to parse Element 0x1654ae6b") make the failure.
        assert done.returncode == 0, f"gst-launch-1.0 failed: {(done.stderr + done.stdout)[-800:]}"
        return


def gstreamer_gray_frames(path: Path, width: int, height: int, workdir: Path) -> np.ndarray:
    """The luma of every video frame GStreamer decodes from `path`, as (frames, height, width).

    Frames of another size are scaled to width x height: the bar code scales with the picture.
    Skips the calling test when an element the file needs is missing.
    """
    require_gstreamer_for(path)
    raw = workdir / f"{path.name}.gray"
    run_gst_launch(
        "filesrc", f"location={path}", "!", "decodebin", "name=d",
        "d.", "!", "video/x-raw", "!", "queue", "!", "videoscale", "!", "videoconvert", "!",
        f"video/x-raw,format=GRAY8,width={width},height={height}",
        "!", "filesink", f"location={raw}",
        # An unlinked audio pad would stall the pipeline: drain it.
        *(["d.", "!", "audio/x-raw", "!", "queue", "!", "fakesink"] if _has(path, "audio")
          else []),
    )
    data = np.fromfile(raw, dtype=np.uint8)
    # GStreamer pads GRAY8 rows to a multiple of 4 bytes.
    stride = (width + 3) // 4 * 4
    frame_size = stride * height
    frames = data[: len(data) // frame_size * frame_size].reshape(-1, height, stride)
    return frames[:, :, :width]


def decode_with_gstreamer(path: Path, width: int, height: int, workdir: Path) -> list[datetime]:
    """The wall times of the frames GStreamer decodes from `path`."""
    return [synth.frame_wall_time(frame) for frame in gstreamer_gray_frames(path, width, height, workdir)]


def _has(path: Path, kind: str) -> bool:
    with av.open(str(path)) as container:
        return bool(getattr(container.streams, kind))


def frame_steps_ok(walls: list[datetime], step: timedelta, gaps=()) -> list[tuple]:
    """Pairs of consecutive frames whose wall times are not one frame apart (outside gaps)."""
    bad = []
    for a, b in zip(walls, walls[1:], strict=False):
        if b - a == step:
            continue
        if any(a < gap_end and b >= gap_end for _, gap_end in gaps):
            continue
        bad.append((a, b))
    return bad


def beep_offsets(decoded: Decoded, until: float | None = None) -> list[float]:
    """For each beep in the output audio: its time minus the time of the frame showing it.

    Beeps starting at or after output time `until` are left out: near the end of the video
    (audio may run on, or start early, by part of an audio frame) no frame shows their second.
    """
    onsets = synth.beep_onsets(decoded.audio, decoded.sample_rate)
    if until is not None:
        onsets = [o for o in onsets if decoded.audio_start + o < until]
    frame_at_second = {
        w.replace(microsecond=0): t
        for t, w in zip(decoded.times, decoded.walls, strict=False)
        if w.microsecond == 0
    }
    offsets = []
    for onset in onsets:
        at = decoded.audio_start + onset
        # The wall second of this beep is the frame nearest in output time showing a whole second.
        nearest = min(frame_at_second.values(), key=lambda t: abs(t - at), default=None)
        if nearest is not None:
            offsets.append(at - nearest)
    return offsets


def decode_audio_with_gstreamer(path: Path, workdir: Path) -> np.ndarray:
    """Mono float samples GStreamer decodes from the audio of `path` (at 16 kHz)."""
    require_gstreamer_for(path)
    raw = workdir / f"{path.name}.f32"
    run_gst_launch(
        "filesrc", f"location={path}", "!", "decodebin", "name=d",
        "d.", "!", "audio/x-raw", "!", "queue", "!", "audioconvert", "!", "audioresample",
        "!", "audio/x-raw,format=F32LE,channels=1,rate=16000", "!",
        "filesink", f"location={raw}",
        *(["d.", "!", "video/x-raw", "!", "queue", "!", "fakesink"] if _has(path, "video")
          else []),
    )
    return np.fromfile(raw, dtype=np.float32)


def read_overlay_line(gray: np.ndarray, top: int, left: int, scale: int, length: int) -> str:
    """Read `length` characters of burned-in text (exports.media.bitmapfont) whose first cell
    starts at (top, left): each glyph pixel is sampled at its centre and the cell is matched
    to the nearest glyph, so encoding noise does not matter."""
    from exports.media import bitmapfont

    names = list(bitmapfont.GLYPHS)
    stack = np.stack([bitmapfont.GLYPHS[n] for n in names])
    rows = top + scale * np.arange(bitmapfont.HEIGHT) + scale // 2
    text = []
    for k in range(length):
        x0 = left + k * bitmapfont.CELL_WIDTH * scale
        cols = x0 + scale * np.arange(bitmapfont.WIDTH) + scale // 2
        bits = gray[np.ix_(rows, cols)] > 128
        distance = (stack != bits).sum(axis=(1, 2))
        text.append(names[int(np.argmin(distance))])
    return "".join(text)
