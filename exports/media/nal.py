"""Small H.264/HEVC bitstream helpers for splicing re-encoded frames into a copied stream."""

from __future__ import annotations

import re
from dataclasses import dataclass

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

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


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


# -- H.264 picture order count, for containers that store no presentation times (AVI) ----------

H264_SPS, H264_PPS = 7, 8
_HIGH_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)


@dataclass(frozen=True)
class H264Sps:
    """The sequence parameter set fields a slice header's picture order count depends on."""

    sps_id: int
    separate_colour_plane: bool
    log2_max_frame_num: int
    poc_type: int
    log2_max_poc_lsb: int  # 0 unless poc_type is 0
    frame_mbs_only: bool


def h264_sps(nal: bytes) -> H264Sps:
    """Parse an SPS NAL unit up to frame_mbs_only_flag (H.264 7.3.2.1.1)."""
    reader = BitReader(rbsp(nal[1:]))
    profile_idc = reader.bits(8)
    reader.bits(16)  # constraint flags, level_idc
    sps_id = reader.ue()
    separate = False
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = reader.ue()
        if chroma_format_idc == 3:
            separate = bool(reader.bits(1))
        reader.ue(), reader.ue(), reader.bits(1)  # bit depths, qpprime_y_zero_transform_bypass
        if reader.bits(1):  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if reader.bits(1):
                    _skip_scaling_list(reader, 16 if index < 6 else 64)
    log2_max_frame_num = reader.ue() + 4
    poc_type = reader.ue()
    log2_max_poc_lsb = 0
    if poc_type == 0:
        log2_max_poc_lsb = reader.ue() + 4
    elif poc_type == 1:
        reader.bits(1)
        reader.se(), reader.se()
        for _ in range(reader.ue()):
            reader.se()
    reader.ue(), reader.bits(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    reader.ue(), reader.ue()  # picture size in macroblocks
    return H264Sps(
        sps_id, separate, log2_max_frame_num, poc_type, log2_max_poc_lsb, bool(reader.bits(1))
    )


def _skip_scaling_list(reader: BitReader, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + reader.se() + 256) % 256
        last = following or last


def h264_pps_ids(nal: bytes) -> tuple[int, int]:
    """(pic_parameter_set_id, seq_parameter_set_id) of a PPS NAL unit."""
    reader = BitReader(rbsp(nal[1:8]))
    return reader.ue(), reader.ue()


@dataclass(frozen=True)
class H264SliceOrder:
    """What a slice header says about picture order (H.264 7.3.3)."""

    pps_id: int
    frame_num: int
    field: bool
    poc_lsb: int


def h264_slice_order(nal: bytes, sps_by_pps: dict[int, H264Sps]) -> H264SliceOrder:
    reader = BitReader(rbsp(nal[1:40]))
    reader.ue(), reader.ue()  # first_mb_in_slice, slice_type
    pps_id = reader.ue()
    sps = sps_by_pps[pps_id]
    if sps.separate_colour_plane:
        reader.bits(2)
    frame_num = reader.bits(sps.log2_max_frame_num)
    field = not sps.frame_mbs_only and bool(reader.bits(1))
    if h264_nal_type(nal) == H264_IDR:
        reader.ue()  # idr_pic_id
    poc_lsb = reader.bits(sps.log2_max_poc_lsb) if sps.poc_type == 0 else 0
    return H264SliceOrder(pps_id, frame_num, field, poc_lsb)


class H264PictureOrder:
    """Picture order counts of H.264 pictures fed in decode order (H.264 8.2.1.1, POC types 0
    and 2). `order` returns (IDR period, POC): sorting by it gives presentation order.

    Raises ValueError for what it does not follow (field pictures, POC type 1, no slice);
    memory_management_control_operation 5 is not looked for (no camera encoder seen uses it).
    """

    def __init__(self, parameter_sets: list[bytes]):
        self.sps: dict[int, H264Sps] = {}
        self.pps_sps: dict[int, int] = {}
        self.period, self.prev_msb, self.prev_lsb, self.count = 0, 0, 0, 0
        for unit in parameter_sets:
            self._parameter_set(unit)

    def _parameter_set(self, unit: bytes) -> None:
        if h264_nal_type(unit) == H264_SPS:
            sps = h264_sps(unit)
            self.sps[sps.sps_id] = sps
        elif h264_nal_type(unit) == H264_PPS:
            pps_id, sps_id = h264_pps_ids(unit)
            self.pps_sps[pps_id] = sps_id

    def order(self, nals: list[bytes]) -> tuple[int, int]:
        for unit in nals:
            nal_type = h264_nal_type(unit)
            if nal_type in (H264_SPS, H264_PPS):
                self._parameter_set(unit)
            elif nal_type in (H264_SLICE, H264_IDR):
                return self._slice_order(unit)
        raise ValueError("no slice in the access unit")

    def _slice_order(self, unit: bytes) -> tuple[int, int]:
        by_pps = {pps: self.sps[sps] for pps, sps in self.pps_sps.items() if sps in self.sps}
        header = h264_slice_order(unit, by_pps)
        sps = by_pps[header.pps_id]
        if header.field or sps.poc_type == 1:
            raise ValueError("field pictures / POC type 1 are not followed")
        if h264_nal_type(unit) == H264_IDR:
            self.period, self.prev_msb, self.prev_lsb, self.count = self.period + 1, 0, 0, 0
        if sps.poc_type == 2:  # output order is decode order
            self.count += 1
            return self.period, self.count
        half, lsb = 1 << (sps.log2_max_poc_lsb - 1), header.poc_lsb
        msb = self.prev_msb
        if lsb < self.prev_lsb and self.prev_lsb - lsb >= half:
            msb += 2 * half
        elif lsb > self.prev_lsb and lsb - self.prev_lsb > half:
            msb -= 2 * half
        if unit[0] & 0x60:  # nal_ref_idc: only reference pictures carry the count on
            self.prev_msb, self.prev_lsb = msb, lsb
        return self.period, msb + lsb
