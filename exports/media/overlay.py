"""Camera name and recorded time burned into each picture (the `Overlay` export option).

Each frame gets its own recorded wall time (to the second or the millisecond, in the camera's
zone or UTC), drawn with the built-in bitmap font (`bitmapfont`) as white text on a black box
in one corner. The picture is copied first: a decoded frame may still be a reference of the
decoder, so it is never written in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import av
import numpy as np

from . import bitmapfont

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
ZONES = ("camera", "utc")
TEXT_Y, BOX_Y, NEUTRAL = 235, 16, 128  # luma of text and box, chroma of both (grey axis)
LONGEST_LINE = 34  # characters that must fit across the picture (a millisecond time + offset)


@dataclass(frozen=True)
class OverlaySpec:
    """What to draw and where."""

    name: str  # first line: the camera
    position: str = "top-left"
    zone: str | None = None  # IANA name for the camera's zone; None: UTC
    milliseconds: bool = False

    def lines(self, wall: datetime) -> list[str]:
        """The text for a frame recorded at `wall` (aware)."""
        zone = ZoneInfo(self.zone) if self.zone else UTC
        local = wall.astimezone(zone)
        text = local.strftime("%Y-%m-%d %H:%M:%S")
        if self.milliseconds:
            text += f".{local.microsecond // 1000:03d}"
        offset = local.utcoffset()
        if zone is UTC or not offset:
            text += " UTC"
        else:
            text += " " + local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:]
        return [self.name, text]


def scale_for(width: int, height: int) -> int:
    """Screen pixels per font pixel: 4 at 1080p, 2 at 480p; a long line always fits."""
    return max(1, min(height // 240, width // (bitmapfont.CELL_WIDTH * LONGEST_LINE)))


def label_box(spec: OverlaySpec, lines: list[str], width: int, height: int):
    """(top, left, mask) of the text block in a picture of this size: the mask is True on
    text pixels, False on the box around them. Tests use it to know where to read."""
    scale = scale_for(width, height)
    rendered = [bitmapfont.render(line, scale) for line in lines]
    inner_w = max(r.shape[1] for r in rendered)
    pad = scale
    mask = np.zeros((sum(r.shape[0] for r in rendered) + 2 * pad, inner_w + 2 * pad), dtype=bool)
    y = pad
    for r in rendered:
        mask[y : y + r.shape[0], pad : pad + r.shape[1]] = r
        y += r.shape[0]
    mask = mask[: height - 2 * scale, : width - 2 * scale]  # a long name is cut at the edge
    margin = 2 * scale
    top = margin if spec.position.startswith("top") else height - margin - mask.shape[0]
    left = margin if spec.position.endswith("left") else width - margin - mask.shape[1]
    return max(0, top), max(0, left), mask


def draw(frame: av.VideoFrame, spec: OverlaySpec, wall: datetime) -> av.VideoFrame:
    """A copy of `frame` (as 4:2:0) with the label for `wall` drawn in."""
    fmt = "yuvj420p" if frame.format.name == "yuvj420p" else "yuv420p"
    source = frame if frame.format.name == fmt else frame.reformat(format=fmt)
    out = av.VideoFrame(frame.width, frame.height, fmt)
    planes = [_copy_plane(a, b) for a, b in zip(source.planes, out.planes, strict=True)]
    top, left, mask = label_box(spec, spec.lines(wall), frame.width, frame.height)
    rows, cols = mask.shape
    planes[0][top : top + rows, left : left + cols] = np.where(mask, TEXT_Y, BOX_Y)
    for chroma in planes[1:]:  # half resolution: the box's chroma made neutral grey
        chroma[top // 2 : (top + rows + 1) // 2, left // 2 : (left + cols + 1) // 2] = NEUTRAL
    out.pts = frame.pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out


def _copy_plane(source, target) -> np.ndarray:
    """Copy one plane's pixels; return a writable view of the target's (rows × width)."""
    def view(plane):
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        return rows[: plane.height, : plane.width]

    pixels = view(target)
    pixels[:] = view(source)
    return pixels
