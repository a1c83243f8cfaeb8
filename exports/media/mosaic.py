"""A mosaic: several cameras' recordings of one range in one synchronized video, as a grid.

Each camera is decoded from its segments on its own (frames placed by their recorded wall
time); the output runs on one clock at the highest frame rate among the cameras (at most
`MAX_FPS`), and at each output instant every tile shows the frame on screen on that camera at
that instant - the latest frame recorded at or before it - or black where the camera recorded
nothing for `GAP_SECONDS`. Tiles are the first camera's size (others scaled to it; all scaled
down so the grid fits `MAX_SIZE`: 2x2 of 1080p cameras is 1080p, not 4K), laid out
row by row in a 2x2 or 3x3 grid, each labelled at its bottom left with the camera's name.
Always a transcode: H.264 (no B-frames, so every container takes it), no audio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import compat
from .engine import ExportResult, SourceSegment
from .errors import ExportCancelled, ExportError, NoRecordingError

GRIDS = {"2x2": 2, "3x3": 3}
MAX_FPS = 30
MAX_SIZE = (1920, 1080)  # the whole grid: tiles of larger cameras are scaled down to fit
GAP_SECONDS = 2.0
LABEL_SCALE = 2

# A 3x5 bitmap font: rows of three bits, top to bottom (letters, digits, a little punctuation).
_FONT = {
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111", "0": "111101101101111", "1": "010110010010111",
    "2": "111001111100111", "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111", "9": "111101111001111",
    "-": "000000111000000", "_": "000000000000111", ".": "000000000000010", ":": "000010000010000",
    "#": "101111101111101", "/": "001001010100100", " ": "000000000000000",
}


@dataclass(frozen=True)
class MosaicInput:
    """One camera of the mosaic: its label and its recorded segments."""

    label: str
    segments: list[SourceSegment]


def export_mosaic(
    cameras: list[MosaicInput],
    start: datetime,
    end: datetime,
    grid: str,
    fmt: str,
    out_path: Path,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportResult:
    """Write the mosaic of [start, end) into `out_path` (via a temporary file beside it)."""
    side = GRIDS.get(grid)
    if side is None:
        raise ExportError(f"unknown mosaic {grid!r}; expected one of {', '.join(GRIDS)}")
    if not 1 <= len(cameras) <= side * side:
        raise ExportError(f"a {grid} mosaic holds 1 to {side * side} cameras, not {len(cameras)}")
    if fmt not in compat.FORMATS:
        raise ExportError(f"unknown format {fmt!r}")
    width, height, fps = _geometry(cameras, side)
    feeds = [_Feed(camera, start, width, height) for camera in cameras]
    if all(feed.empty for feed in feeds):
        raise NoRecordingError(f"none of the cameras recorded anything between {start} and {end}")
    out_path = Path(out_path)
    tmp_path = out_path.with_name(f".{out_path.name}.mosaic.part")
    count = math.ceil((end - start).total_seconds() * fps)
    try:
        with av.open(str(tmp_path), "w", format=compat.MUXER[fmt]) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = width * side, height * side
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "bf": "0", "preset": "veryfast"}
            canvas = np.zeros((height * side, width * side, 3), dtype=np.uint8)
            labels = [label_patch(camera.label, width, height) for camera in cameras]
            for number in range(count):
                if cancelled is not None and number % 25 == 0 and cancelled():
                    raise ExportCancelled("cancelled")
                at = start + timedelta(microseconds=round(number * 1_000_000 / fps))
                for position, feed in enumerate(feeds):
                    row, col = divmod(position, side)
                    tile = canvas[row * height:(row + 1) * height, col * width:(col + 1) * width]
                    tile[:] = feed.picture_at(at)
                    patch = labels[position]
                    tile[height - patch.shape[0]:, : patch.shape[1]] = patch
                frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
                frame.pts = number
                frame.time_base = Fraction(1, 1) / fps
                for packet in stream.encode(frame):
                    container.mux(packet)
                if progress is not None and number % 25 == 0:
                    progress(number / max(count, 1))
            for packet in stream.encode(None):
                container.mux(packet)
        tmp_path.replace(out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        for feed in feeds:
            feed.close()
    result = ExportResult(
        frames=count, duration_s=count / float(fps), technique="transcode",
        first_frame=start,
        last_frame=start + timedelta(microseconds=round((count - 1) * 1_000_000 / fps)),
        transcoded=[f"video: mosaic {grid} of {len(cameras)} cameras at {fps} fps -> h264"],
    )
    result.bytes = out_path.stat().st_size
    if progress is not None:
        progress(1.0)
    return result


def _geometry(cameras: list[MosaicInput], side: int) -> tuple[int, int, Fraction]:
    """Tile size (the first camera's, within MAX_SIZE for the grid, even) and output rate
    (the highest, capped)."""
    size, rates = None, []
    for camera in cameras:
        for segment in camera.segments[:1]:
            with av.open(str(segment.path)) as container:
                stream = container.streams.video[0]
                size = size or (stream.codec_context.width, stream.codec_context.height)
                if stream.average_rate:
                    rates.append(Fraction(stream.average_rate))
    if size is None:
        raise NoRecordingError("none of the cameras has a recording in the range")
    rate = min(max(rates or [Fraction(25)]), Fraction(MAX_FPS))
    scale = min(1.0, MAX_SIZE[0] / (side * size[0]), MAX_SIZE[1] / (side * size[1]))
    width, height = int(size[0] * scale), int(size[1] * scale)
    return width - width % 2, height - height % 2, rate


class _Feed:
    """One camera's pictures in recorded order, read as the mosaic's clock advances."""

    def __init__(self, camera: MosaicInput, start: datetime, width: int, height: int):
        self.width, self.height = width, height
        self.black = np.zeros((height, width, 3), dtype=np.uint8)
        self.frames = self._frames(camera.segments, start)
        self.current: tuple[datetime, np.ndarray] | None = None
        self.upcoming = next(self.frames, None)
        self.empty = self.upcoming is None

    def picture_at(self, at: datetime) -> np.ndarray:
        while self.upcoming is not None and self.upcoming[0] <= at:
            self.current = self.upcoming
            self.upcoming = next(self.frames, None)
        if self.current is None or (at - self.current[0]).total_seconds() > GAP_SECONDS:
            return self.black
        return self.current[1]

    def _frames(self, segments, start) -> Iterator[tuple[datetime, np.ndarray]]:
        previous = None
        for segment in segments:
            with av.open(str(segment.path)) as container:
                stream = container.streams.video[0]
                origin = None
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    origin = frame.pts if origin is None else origin
                    wall = segment.start + timedelta(seconds=float((frame.pts - origin) * stream.time_base))
                    if previous is not None and wall <= previous[0]:
                        continue  # overlapping segments: each instant once
                    # A copy: the decoder may reuse the buffer a frame's array looks at.
                    picture = frame.reformat(self.width, self.height, format="rgb24").to_ndarray().copy()
                    if wall <= start:
                        previous = (wall, picture)  # the frame on screen at start, so far
                        continue
                    if previous is not None and previous[0] <= start:
                        yield previous
                    previous = (wall, picture)
                    yield previous
        if previous is not None and previous[0] <= start:
            yield previous

    def close(self) -> None:
        self.frames.close()


def label_patch(label: str, width: int, height: int) -> np.ndarray:
    """The label in white on a black band, for a tile's bottom left (drawn once, pasted on
    every frame)."""
    text = label.upper()[: max(1, (width - 4) // (4 * LABEL_SCALE))]
    glyph_h = 5 * LABEL_SCALE
    patch = np.zeros((min(height, glyph_h + 4), min(width, 4 + len(text) * 4 * LABEL_SCALE), 3), np.uint8)
    left = 2
    for char in text:
        glyph = _FONT.get(char, _FONT["#"])
        for index, on in enumerate(glyph):
            if on == "1":
                r, c = divmod(index, 3)
                y, x = 2 + r * LABEL_SCALE, left + c * LABEL_SCALE
                patch[y:y + LABEL_SCALE, x:x + LABEL_SCALE] = 255
        left += 4 * LABEL_SCALE
    return patch
