"""What kind of frame an H.264/HEVC access unit is, from the first bytes of its NAL units.

`classify_nal_units` reads the units of one frame; `head_kinds` does the same for every sample
of an MP4 track at once with numpy, from the first bytes of each sample, and leaves to the
former the rows it cannot settle from those bytes alone (SEI messages, several I slices, units
longer than the bytes read, anything odd) - so both give the same kinds, row for row.
"""

from __future__ import annotations

import enum
import functools

import numpy as np

from exports.media import nal


class Kind(enum.IntEnum):
    IDR = 1  # closed random access point; every frame of an intra-only codec; every audio frame
    OPEN = 2  # open random access point: HEVC CRA/BLA, H.264 non-IDR I picture
    RECOVERY = 3  # H.264 recovery point SEI with recovery_frame_cnt > 0 on a non-I picture
    LEADING = 4  # leading picture needing the previous GOP (HEVC RASL, H.264 open GOP B)
    LEADING_OK = 5  # leading picture decodable from its random access point (HEVC RADL)
    INTER = 6  # everything else


def classify_nal_units(codec: str, units: list | None, keyframe: bool) -> tuple[int, int]:
    """Kind and recovery count of an H.264/HEVC frame from its (first) NAL units."""
    try:
        if units is not None:
            return (_h264_kind if codec == "h264" else _hevc_kind)(units)
    except (ValueError, IndexError):
        pass  # a header we cannot read: trust the demuxer's key flag
    return (Kind.IDR if keyframe else Kind.INTER), 0


def _slice_type(unit) -> int:
    """nal.h264_slice_type, looked up by the header's second byte when it holds both codes
    (first_mb_in_slice 0 is the single bit 1, slice_type at most 7 bits): one parse per value
    instead of one per frame."""
    known = _slice_type_of_byte(unit[1]) if len(unit) > 1 and unit[1] & 0x80 else None
    return nal.h264_slice_type(unit) if known is None else known


@functools.lru_cache(maxsize=128)
def _slice_type_of_byte(value: int) -> int | None:
    try:
        return nal.h264_slice_type(bytes((nal.H264_SLICE, value)))
    except ValueError:  # a slice_type code longer than the byte (not a valid stream)
        return None


def _h264_kind(nals: list) -> tuple[int, int]:
    """IDR slice -> IDR; all slices I/SI -> OPEN; recovery point SEI (count > 0) -> RECOVERY."""
    recovery, intra = None, None
    for unit in nals:
        nal_type = nal.h264_nal_type(unit)
        if nal_type == nal.H264_IDR:
            return Kind.IDR, 0
        if nal_type == nal.H264_SEI:
            found = nal.sei_recovery_frame_cnt(unit)
            recovery = found if found is not None else recovery
        elif nal_type == nal.H264_SLICE:
            intra = _slice_type(unit) in (2, 4)  # I, SI
            if not intra:
                break
    if intra:
        return Kind.OPEN, 0
    if recovery:
        return Kind.RECOVERY, min(recovery, np.iinfo(np.int16).max)
    return Kind.INTER, 0


_HEVC_KINDS = {
    19: Kind.IDR,
    20: Kind.IDR,
    21: Kind.OPEN,
    16: Kind.OPEN,
    17: Kind.OPEN,
    18: Kind.OPEN,
    8: Kind.LEADING,
    9: Kind.LEADING,
    6: Kind.LEADING_OK,
    7: Kind.LEADING_OK,
}


def _hevc_kind(nals: list) -> tuple[int, int]:
    """By the first VCL NAL unit's type (H.265 table 7-1); recovery point SEI on trailing ones."""
    recovery = None
    for unit in nals:
        nal_type = nal.hevc_nal_type(unit)
        if nal_type == nal.HEVC_PREFIX_SEI:
            found = nal.sei_recovery_frame_cnt(unit, header_bytes=2)
            recovery = found if found is not None else recovery
        elif nal_type < 32:
            kind = _HEVC_KINDS.get(nal_type, Kind.INTER)
            if kind == Kind.INTER and recovery:
                return Kind.RECOVERY, min(recovery, np.iinfo(np.int16).max)
            return kind, 0
    return Kind.INTER, 0


# -- every sample of a track at once --------------------------------------------------------

HEAD_BYTES = 64  # read from the start of each sample for `head_kinds`
_MAX_UNITS = 6  # NAL units walked per sample before leaving it to `classify_nal_units`


def _slice_type_table() -> np.ndarray:
    """slice_type % 5 by a slice header's second byte where that byte holds it whole, else -1."""
    table = np.full(256, -1, dtype=np.int8)
    for value in range(0x80, 0x100):
        found = _slice_type_of_byte(value)
        table[value] = -1 if found is None else found
    return table


_SLICE_TYPE = _slice_type_table()
_IDR, _OPEN, _INTER = int(Kind.IDR), int(Kind.OPEN), int(Kind.INTER)  # enum lookups are slow
_HEVC_KIND = np.array([_HEVC_KINDS.get(t, Kind.INTER) for t in range(32)], dtype=np.uint8)


def head_kinds(
    codec: str, heads: np.ndarray, readable: np.ndarray, sizes: np.ndarray, length_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The kind of each sample from `heads` (n x HEAD_BYTES, its first bytes; `readable` of
    them are real), and a mask of the samples left undecided for `classify_nal_units`.

    Walks each sample's length-prefixed units as `classify_nal_units` would: an IDR slice (or
    any HEVC VCL unit) settles it; an H.264 P/B slice makes it INTER; an I slice is followed by
    the next slice (OPEN if all are); other non-VCL units are stepped over. An SEI unit (it
    may carry a recovery point), a unit cut short or beyond the bytes read leaves the row
    undecided.
    """
    count = len(sizes)
    kind = np.full(count, _INTER, dtype=np.uint8)
    undecided = np.zeros(count, dtype=bool)
    if not count:
        return kind, undecided
    h264 = codec == "h264"
    need = 2 if h264 else 1  # header bytes a classifier reads from a unit
    sizes = sizes.astype(np.int64)
    limit = np.minimum(sizes, readable)
    offset = np.zeros(count, dtype=np.int64)
    intra = np.zeros(count, dtype=bool)
    rows = np.arange(count)
    for _ in range(_MAX_UNITS):
        if not len(rows):
            break
        at = offset[rows]
        ended = at + length_size > sizes[rows]  # no unit left: what was seen decides
        kind[rows[ended]] = np.where(intra[rows[ended]], _OPEN, _INTER)
        blind = ~ended & (at + length_size + need > limit[rows])
        undecided[rows[blind]] = True
        keep = ~ended & ~blind
        rows, at = rows[keep], at[keep]
        unit_size = np.zeros(len(rows), dtype=np.int64)
        for byte in range(length_size):
            unit_size = (unit_size << 8) | heads[rows, at + byte]
        start = at + length_size
        empty = unit_size == 0
        offset[rows[empty]] = start[empty]  # skipped, as the reader skips empty units
        short = ~empty & (np.minimum(unit_size, sizes[rows] - start) < need)
        undecided[rows[short]] = True
        first = heads[rows, start]
        second = heads[rows, np.minimum(start + 1, heads.shape[1] - 1)]
        walking = empty
        if h264:
            nal_type = first & 0x1F
            slice_type = _SLICE_TYPE[second]
            unit = ~empty & ~short
            idr = unit & (nal_type == nal.H264_IDR)
            kind[rows[idr]] = _IDR
            odd = unit & (
                (nal_type == nal.H264_SEI) | (nal_type == nal.H264_SLICE) & (slice_type < 0)
            )
            undecided[rows[odd]] = True
            is_slice = unit & (nal_type == nal.H264_SLICE) & (slice_type >= 0)
            i_slice = is_slice & ((slice_type == 2) | (slice_type == 4))
            intra[rows[is_slice]] = i_slice[is_slice]
            # P/B slice: INTER (the default); an I slice or another unit: on to the next
            walking = walking | i_slice | unit & ~idr & ~odd & ~is_slice
        else:
            nal_type = (first >> 1) & 0x3F
            unit = ~empty & ~short
            vcl = unit & (nal_type < 32)
            kind[rows[vcl]] = _HEVC_KIND[nal_type[vcl]]
            sei = unit & (nal_type == nal.HEVC_PREFIX_SEI)
            undecided[rows[sei]] = True
            walking = walking | unit & ~vcl & ~sei
        step = ~empty & walking
        offset[rows[step]] = start[step] + unit_size[step]
        rows = rows[walking]
    undecided[rows] = True
    return kind, undecided
