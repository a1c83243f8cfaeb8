"""Synthesise small, realistic camera segments with PyAV.

Used by the demo archive, the tests and the benchmarks. Every video frame carries its own
wall-clock time twice: as a human-readable clock and as a 40-bit bar code (milliseconds since
2000-01-01 UTC) that `frame_wall_time` reads back from a decoded frame, so a test can tell
exactly which recorded frame a player shows. Audio is silent except for a short 1 kHz beep
starting at every whole wall-clock second, so A/V sync can be measured on the output.

Besides plain recorder output it writes the streams real cameras and transcoders send (issue 9):
open GOPs (H.264 non-IDR I-frames and HEVC CRA pictures with leading B-frames), H.264 periodic
intra refresh, variable frame rate inside a file, full-range BT.709 luma, intra-only streams and
MPEG-TS files whose raw 33-bit timestamps wrap. `frame_offsets` says when each frame was shot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
CODE_BITS = 40
CODE_COLUMNS = 20
BEEP_SECONDS = 0.05
BEEP_HZ = 1000
# MPEG-TS timestamps count 90 kHz ticks in 33 bits: they wrap every 2**33 / 90000 = 95443.7 s.
TS_WRAP_S = Fraction(1 << 33, 90000)
# Muxer options that keep a .ts file's timestamps as given (FFmpeg otherwise adds 1.4 s).
RAW_TS_TIMESTAMPS = {"mpegts_copyts": "1"}

CONTAINER_BY_SUFFIX = {
    ".mp4": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".ts": "mpegts",
    ".avi": "avi",
    ".flv": "flv",
    ".asf": "asf",
}


@dataclass(frozen=True)
class SegmentSpec:
    """What a synthetic recorder writes."""

    vcodec: str = "h264"  # h264 | hevc | mjpeg
    width: int = 320
    height: int = 240
    fps: Fraction = Fraction(25)
    gop: int | None = None  # frames between keyframes; default one second
    bframes: int = 0
    acodec: str | None = "aac"  # aac | pcm_s16le | pcm_mulaw | pcm_alaw | None
    sample_rate: int = 16000
    crf: int = 30
    x264_extra: dict = field(default_factory=dict)
    preset: str = "veryfast"  # x264 preset (the benchmark uses ultrafast)
    noise: int = 0  # amplitude of random texture below the bar code (realistic bitrates)
    # Open GOP: keyframes after the first are H.264 non-IDR I-frames (recovery point SEI) or
    # HEVC CRA pictures, and the B-frames before them in display order follow them in decode
    # order, referencing the previous GOP (RASL). Leading B-frames appear when `gop` is a
    # multiple of bframes + 1 (B-frame decisions are fixed so the pattern is predictable).
    open_gop: bool = False
    intra_refresh: bool = False  # H.264: one IDR, then a column of intra blocks sweeping
    full_range: bool = False  # yuvj420p (color_range pc) tagged BT.709 primaries/transfer/matrix
    # A "smart codec" camera idling: spans (seconds into the segment) recorded at `slow_fps`.
    rate_drops: tuple[tuple[float, float], ...] = ()
    slow_fps: Fraction = Fraction(5)

    @property
    def frame_duration(self) -> Fraction:
        return 1 / Fraction(self.fps)

    @property
    def keyframe_interval(self) -> int:
        return self.gop or max(1, round(Fraction(self.fps)))


def frame_offsets(spec: SegmentSpec, duration: float) -> list[Fraction]:
    """Seconds from a segment's first frame to each of its frames.

    Frames are one frame interval apart, or 1 / `slow_fps` apart while inside one of the
    spec's rate drops; a segment holds the frames shot before `duration`.
    """
    step = spec.frame_duration
    if not spec.rate_drops:
        return [index * step for index in range(round(duration * Fraction(spec.fps)))]
    slow = 1 / Fraction(spec.slow_fps)
    if (slow / step).denominator != 1:
        raise ValueError("the slow frame interval must be a whole number of frame intervals")
    drops = [(Fraction(a).limit_denominator(1000), Fraction(b).limit_denominator(1000))
             for a, b in spec.rate_drops]
    end = Fraction(duration).limit_denominator(1000)
    offsets, at = [], Fraction(0)
    while at < end:
        offsets.append(at)
        at += slow if any(a <= at < b for a, b in drops) else step
    return offsets


def shown_time(wall: datetime) -> datetime:
    """The wall time a frame shot at `wall` carries in its bar code (whole milliseconds)."""
    return EPOCH_2000 + timedelta(milliseconds=_millis(wall))


def _millis(wall: datetime) -> int:
    return round((wall - EPOCH_2000).total_seconds() * 1000)


# -- picture ----------------------------------------------------------------------------------

_DIGITS = {  # 3x5 bitmap font, enough for a clock
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    "-": "000000111000000",
    ":": "000010000010000",
    ".": "000000000000010",
    " ": "000000000000000",
}


def _block_size(width: int) -> int:
    return max(4, width // CODE_COLUMNS)


def encode_picture(wall: datetime, width: int, height: int, frame_number: int) -> np.ndarray:
    """An RGB picture showing `wall` as a clock and as a bar code."""
    image = np.full((height, width, 3), 96, dtype=np.uint8)
    # Something that moves, so inter frames carry real changes.
    x = (frame_number * 4) % max(1, width - 16)
    image[height - 24 : height - 8, x : x + 16] = (200, 60, 60)

    block = _block_size(width)
    millis = _millis(wall)
    for bit in range(CODE_BITS):
        row, col = divmod(bit, CODE_COLUMNS)
        value = 255 if (millis >> (CODE_BITS - 1 - bit)) & 1 else 0
        image[row * block : (row + 1) * block, col * block : (col + 1) * block] = value

    text = wall.strftime("%Y-%m-%d %H:%M:%S.") + f"{wall.microsecond // 1000:03d}"
    _draw_text(image, text, top=2 * block + 4, scale=max(1, width // 160))
    return image


def _draw_text(image: np.ndarray, text: str, top: int, scale: int) -> None:
    left = 4
    for char in text:
        glyph = _DIGITS.get(char, _DIGITS[" "])
        for index, on in enumerate(glyph):
            if on == "1":
                r, c = divmod(index, 3)
                y, x = top + r * scale, left + c * scale
                image[y : y + scale, x : x + scale] = 255
        left += 4 * scale
        if left + 3 * scale >= image.shape[1]:
            return


def frame_wall_time(gray: np.ndarray) -> datetime:
    """Read the wall-clock time a synthetic frame was recorded at, from its luma plane."""
    width = gray.shape[1]
    block = _block_size(width)
    millis = 0
    for bit in range(CODE_BITS):
        row, col = divmod(bit, CODE_COLUMNS)
        y0, x0 = row * block + block // 4, col * block + block // 4
        patch = gray[y0 : y0 + block // 2, x0 : x0 + block // 2]
        millis = (millis << 1) | int(patch.mean() > 128)
    return EPOCH_2000 + timedelta(milliseconds=millis)


# -- sound ------------------------------------------------------------------------------------


def beep_samples(first_sample_wall: datetime, count: int, sample_rate: int) -> np.ndarray:
    """Mono float samples: a beep at each whole wall-clock second, silence between."""
    offset = (first_sample_wall - EPOCH_2000).total_seconds()
    t = offset + np.arange(count, dtype=np.float64) / sample_rate
    into_second = t - np.floor(t)
    beep = into_second < BEEP_SECONDS
    return np.where(beep, 0.5 * np.sin(2 * math.pi * BEEP_HZ * t), 0.0).astype(np.float32)


def beep_onsets(samples: np.ndarray, sample_rate: int) -> list[float]:
    """Seconds (from the first sample) at which beeps start in decoded mono audio."""
    loud = np.abs(samples) > 0.1
    onsets, last = [], -math.inf
    for index in np.flatnonzero(loud):
        if index - last > sample_rate * 0.5:
            onsets.append(index / sample_rate)
        last = index
    return onsets


# -- writing ----------------------------------------------------------------------------------


def _encoder_params(spec: SegmentSpec, **extra) -> str:
    """x264/x265 settings of a recorder: fixed GOP (no scene cuts), given B-frames and quality."""
    params = {
        "keyint": spec.keyframe_interval,
        "min-keyint": spec.keyframe_interval,
        "scenecut": 0,
        "bframes": spec.bframes,
        "crf": spec.crf,
    }
    if spec.open_gop:
        # Fixed B-frame placement, so a keyframe lands where B-frames wait for it.
        params.update({"open-gop": 1, "b-adapt": 0})
    if spec.intra_refresh:
        params["intra-refresh"] = 1
    params.update(extra)
    return ":".join(f"{key}={value}" for key, value in params.items())


def _video_stream(container, spec: SegmentSpec):
    rate = Fraction(spec.fps)
    if spec.vcodec == "h264":
        stream = container.add_stream("libx264", rate=rate)
        stream.options = {
            "preset": spec.preset,
            "x264-params": _encoder_params(spec, **spec.x264_extra),
        }
        stream.pix_fmt = "yuvj420p" if spec.full_range else "yuv420p"
    elif spec.vcodec == "hevc":
        stream = container.add_stream("libx265", rate=rate)
        stream.options = {
            "preset": "ultrafast",
            "x265-params": _encoder_params(spec, **{"log-level": "error"}),
        }
        stream.pix_fmt = "yuv420p"
    elif spec.vcodec == "mjpeg":
        stream = container.add_stream("mjpeg", rate=rate)
        stream.pix_fmt = "yuvj420p"
        stream.options = {"q:v": "5"}
    else:
        raise ValueError(f"unsupported synthetic video codec {spec.vcodec!r}")
    stream.width, stream.height = spec.width, spec.height
    stream.codec_context.time_base = 1 / rate
    if spec.full_range:
        ctx = stream.codec_context
        ctx.color_range = FULL_RANGE
        ctx.color_primaries = ctx.color_trc = ctx.colorspace = BT709
    return stream


FULL_RANGE = 2  # AVCOL_RANGE_JPEG ("pc")
BT709 = 1  # AVCOL_PRI_BT709 = AVCOL_TRC_BT709 = AVCOL_SPC_BT709


def _video_frame(picture: np.ndarray, spec: SegmentSpec) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
    if spec.full_range:
        # Convert here, tagged, rather than leaving it to the encoder's implicit conversion.
        frame = frame.reformat(
            format="yuvj420p", dst_colorspace="ITU709", dst_color_range="JPEG",
            dst_color_trc=BT709, dst_color_primaries=BT709,
        )
    return frame


_RNG = np.random.default_rng(2026)


def _add_noise(picture: np.ndarray, amplitude: int, top: int) -> None:
    """Grain like a real sensor's, below the bar code and clock so they stay readable."""
    area = picture[top:]
    grain = _RNG.integers(-amplitude, amplitude + 1, size=area.shape[:2], dtype=np.int16)
    area[:] = np.clip(area.astype(np.int16) + grain[:, :, None], 0, 255).astype(np.uint8)


def _audio_stream(container, spec: SegmentSpec):
    stream = container.add_stream(spec.acodec, rate=spec.sample_rate)
    stream.codec_context.layout = "mono"
    if spec.acodec == "aac":
        stream.codec_context.bit_rate = 32000
    return stream


def write_segment(
    path: Path,
    start: datetime,
    duration: float,
    spec: SegmentSpec = SegmentSpec(),
    *,
    creation_time: datetime | None = None,
    pts_origin: float = 0.0,
    first_frame_number: int = 0,
    muxer_options: dict | None = None,
) -> int:
    """Write one recorded segment whose first frame shows `start`; return its frame count.

    `pts_origin` (seconds) is the timestamp of the first frame inside the file: 0 for files
    that restart at zero, or a running value for recorders whose timestamps continue (MPEG-TS).
    Frames are shot at `frame_offsets(spec, duration)`; each shows its own wall time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = CONTAINER_BY_SUFFIX[path.suffix.lower()]
    offsets = frame_offsets(spec, duration)
    frame_count = len(offsets)
    options = dict(muxer_options or {})
    with av.open(str(path), "w", format=fmt, options=options) as container:
        if creation_time is not None:
            container.metadata["creation_time"] = creation_time.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            )
        video = _video_stream(container, spec)
        audio = _audio_stream(container, spec) if spec.acodec else None
        frame_tb = spec.frame_duration
        origin_frames = round(Fraction(pts_origin) / frame_tb)
        audio_pos = 0
        samples_per_packet = 1024
        for index, offset in enumerate(offsets):
            wall = start + timedelta(seconds=float(offset))
            picture = encode_picture(
                wall, spec.width, spec.height, first_frame_number + index
            )
            if spec.noise:
                _add_noise(picture, spec.noise, top=3 * _block_size(spec.width) + 8)
            frame = _video_frame(picture, spec)
            frame.pts = origin_frames + int(offset / frame_tb)
            frame.time_base = frame_tb
            for packet in video.encode(frame):
                container.mux(packet)
            if audio is not None:
                audio_pos = _write_audio_until(
                    container, audio, spec, start, pts_origin, audio_pos,
                    until=float(offset + frame_tb), samples_per_packet=samples_per_packet,
                )
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            _write_audio_until(
                container, audio, spec, start, pts_origin, audio_pos,
                until=float(offsets[-1] + frame_tb) if offsets else 0.0,
                samples_per_packet=samples_per_packet,
                partial_last=True,
            )
            for packet in audio.encode(None):
                container.mux(packet)
    return frame_count


def _write_audio_until(
    container, audio, spec, start, pts_origin, position, until, samples_per_packet,
    partial_last=False,
):
    """Encode audio samples from `position` up to `until` seconds into the segment."""
    rate = spec.sample_rate
    target = round(until * rate)
    full_chunk = audio.codec_context.frame_size or samples_per_packet
    origin_samples = round(pts_origin * rate)
    while position < target:
        chunk = full_chunk
        if position + chunk > target:
            if not partial_last:
                break
            chunk = target - position
        wall = start + timedelta(seconds=position / rate)
        samples = beep_samples(wall, chunk, rate)
        if spec.acodec == "aac":
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
        else:
            pcm = (samples * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = origin_samples + position
        frame.time_base = Fraction(1, rate)
        for packet in audio.encode(frame):
            container.mux(packet)
        position += chunk
    return position


def frigate_path(root: Path, camera: str, start: datetime) -> Path:
    """Where Frigate stores the segment starting at `start` (UTC)."""
    start = start.astimezone(UTC)
    return Path(root) / start.strftime("%Y-%m-%d/%H") / camera / start.strftime("%M.%S.mp4")


def write_archive(
    paths_and_starts: list[tuple[Path, datetime]],
    segment_seconds: float,
    spec: SegmentSpec = SegmentSpec(),
    continuous_pts: bool = False,
    pts_origin: float = 0.0,
    muxer_options: dict | None = None,
) -> list[Path]:
    """Write consecutive segments; with `continuous_pts` timestamps continue across files."""
    written = []
    frames = 0
    elapsed = Fraction(0)
    for path, start in paths_and_starts:
        origin = pts_origin + float(elapsed) if continuous_pts else 0.0
        frames += write_segment(
            path, start, segment_seconds, spec, pts_origin=origin, first_frame_number=frames,
            muxer_options=muxer_options,
        )
        elapsed += Fraction(segment_seconds).limit_denominator(1000)
        written.append(Path(path))
    return written


def ts_origin_wrapping_after(seconds: float) -> float:
    """The `pts_origin` whose MPEG-TS timestamps wrap `seconds` after a file's first frame.

    Write the file with `RAW_TS_TIMESTAMPS`, so the muxer adds no offset of its own.
    """
    return float(TS_WRAP_S - Fraction(seconds).limit_denominator(1000))
