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


# -- reading NAL unit headers, for the frame index ---------------------------------------------

H264_SLICE, H264_IDR, H264_SEI = 1, 5, 6
HEVC_PREFIX_SEI = 39
SEI_RECOVERY_POINT = 6
_EMULATION_PREVENTION = re.compile(b"\x00\x00\x03")


def nal_units(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of one packet: length-prefixed (`length_size` > 0) or Annex B (0)."""
    if not length_size:
        return split_annexb(data)
    view, nals, pos = memoryview(data), [], 0
    while pos + length_size <= len(view):
        size = int.from_bytes(view[pos : pos + length_size], "big")
        pos += length_size
        if size:
            nals.append(view[pos : pos + size])
        pos += size
    return nals


def rbsp(nal_payload: bytes) -> bytes:
    """The payload with emulation-prevention bytes (00 00 03 -> 00 00) removed (H.264 7.4.1)."""
    return _EMULATION_PREVENTION.sub(b"\x00\x00", bytes(nal_payload))


class BitReader:
    """Big-endian bit reader with the exp-Golomb codes of H.264/HEVC (H.264 9.1)."""

    def __init__(self, data: bytes):
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def bits(self, count: int) -> int:
        if count > self.left:
            raise ValueError("bitstream ends inside a header")
        self.left -= count
        return (self.value >> self.left) & ((1 << count) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.bits(1):
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)


def h264_nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def hevc_nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def h264_slice_type(nal: bytes) -> int:
    """slice_type % 5 of a slice NAL unit (0 P, 1 B, 2 I, 3 SP, 4 SI): its second ue(v)."""
    reader = BitReader(rbsp(nal[1:24]))  # two ue(v) fit in far fewer bytes
    reader.ue()  # first_mb_in_slice
    return reader.ue() % 5


def sei_recovery_frame_cnt(nal: bytes, header_bytes: int = 1) -> int | None:
    """recovery_frame_cnt of a recovery point SEI message in this SEI NAL unit, else None.

    H.264 D.1.8 (ue(v) first in the payload); `header_bytes` 2 reads an HEVC prefix SEI, whose
    recovery_poc_cnt is a se(v) in pictures - returned the same way, as the magnitude.
    """
    data, pos = rbsp(nal[header_bytes:]), 0
    while pos < len(data) and data[pos] != 0x80:  # 0x80: rbsp_trailing_bits
        payload_type, pos = _sei_number(data, pos)
        payload_size, pos = _sei_number(data, pos)
        if payload_type == SEI_RECOVERY_POINT:
            code = BitReader(data[pos : pos + payload_size]).ue()
            return code if header_bytes == 1 else (code + 1) // 2
        pos += payload_size
    return None


def _sei_number(data: bytes, pos: int) -> tuple[int, int]:
    """An SEI payload type or size: 0xFF bytes each add 255, then a final byte (H.264 7.3.2.3)."""
    value = 0
    while pos < len(data) and data[pos] == 0xFF:
        value += 255
        pos += 1
    if pos >= len(data):
        raise ValueError("SEI message ends early")
    return value + data[pos], pos + 1
