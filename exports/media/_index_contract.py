"""TEMPORARY copy of the frame index contract (ENGINE.md) until the `index` branch lands
exports/media/frameindex.py; plan.py imports from frameindex when it exists."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


class Kind(enum.IntEnum):
    IDR = 1
    OPEN = 2
    RECOVERY = 3
    LEADING = 4
    LEADING_OK = 5
    INTER = 6


@dataclass(frozen=True)
class StreamInfo:
    media: str
    codec: str
    time_base: Fraction
    extradata: bytes
    bitstream: str
    nal_length_size: int
    width: int = 0
    height: int = 0
    pix_fmt: str = ""
    color_range: int = 0
    color_primaries: int = 0
    color_trc: int = 0
    colorspace: int = 0
    frame_rate: Fraction | None = None
    sample_rate: int = 0
    channels: int = 0
    frame_size: int = 0
    adts: bool = False


@dataclass
class StreamIndex:
    info: StreamInfo
    pts: np.ndarray
    dts: np.ndarray
    duration: np.ndarray
    pos: np.ndarray
    size: np.ndarray
    kind: np.ndarray
    recovery: np.ndarray


@dataclass
class SegmentIndex:
    path: Path
    size: int
    mtime: float
    container: str
    video: StreamIndex | None
    audio: StreamIndex | None
    damaged: str = ""
