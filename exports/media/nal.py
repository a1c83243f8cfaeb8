"""Small H.264/HEVC bitstream helpers for splicing re-encoded frames into a copied stream."""

from __future__ import annotations

import re

_START_CODE = re.compile(b"\x00\x00\x01")


def is_avcc(extradata: bytes | None) -> bool:
    """True when codec extradata is an avcC record (length-prefixed NAL units, as in MP4)."""
    return bool(extradata) and extradata[0] == 1


def nal_length_size(extradata: bytes) -> int:
    """Bytes in each NAL length prefix of an avcC stream."""
    return (extradata[4] & 3) + 1


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without start codes."""
    starts = [m.end() for m in _START_CODE.finditer(data)]
    nals = []
    for index, begin in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(data)
        nal = data[begin:end]
        # A 4-byte start code leaves a trailing zero on the previous unit.
        if index + 1 < len(starts) and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def annexb_to_avcc(data: bytes, length_size: int = 4) -> bytes:
    """Rewrite an Annex B packet as length-prefixed NAL units."""
    return b"".join(len(nal).to_bytes(length_size, "big") + nal for nal in split_annexb(data))


def _length_prefixed(extradata: bytes, pos: int, count: int) -> tuple[list[bytes], int]:
    """`count` NAL units, each after a 2-byte size, from `pos`; and the position after them."""
    nals = []
    for _ in range(count):
        size = int.from_bytes(extradata[pos : pos + 2], "big")
        nals.append(extradata[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return nals, pos


def avcc_parameter_sets(extradata: bytes) -> list[bytes]:
    """The SPS and PPS NAL units stored in an avcC record."""
    sps, pos = _length_prefixed(extradata, 6, extradata[5] & 0x1F)
    pps, _ = _length_prefixed(extradata, pos + 1, extradata[pos])
    return sps + pps


def hvcc_parameter_sets(extradata: bytes) -> list[bytes]:
    """The VPS, SPS, PPS (and SEI) NAL units stored in an hvcC record."""
    nals, pos = [], 23
    for _ in range(extradata[22]):
        count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
        array, pos = _length_prefixed(extradata, pos + 3, count)
        nals += array
    return nals


def parameter_sets(extradata: bytes, codec: str = "h264") -> list[bytes]:
    """Parameter set NAL units from extradata in avcC/hvcC or Annex B form."""
    if is_avcc(extradata):
        return hvcc_parameter_sets(extradata) if codec == "hevc" else avcc_parameter_sets(extradata)
    return split_annexb(extradata or b"")


def length_size(extradata: bytes, codec: str = "h264") -> int:
    """Bytes in each NAL length prefix of an avcC or hvcC stream."""
    return (extradata[21] & 3) + 1 if codec == "hevc" else nal_length_size(extradata)


def with_start_codes(nals: list[bytes]) -> bytes:
    """NAL units as an Annex B byte stream with 4-byte start codes."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


def x264_profile(profile: str | None) -> str:
    """The x264 `profile` option matching a decoder's profile name."""
    name = (profile or "high").lower()
    if "baseline" in name:
        return "baseline"
    if name == "main":
        return "main"
    if "4:4:4" in name:
        return "high444"
    if "4:2:2" in name:
        return "high422"
    if "10" in name:
        return "high10"
    return "high"
