"""The sample tables of an MP4/MOV file, read from its `moov` box without demuxing.

What FFmpeg's mov demuxer would hand out packet by packet (timestamps, byte offsets, sizes, sync
flags), computed from the tables with numpy: a 10 s segment costs one read of `moov` instead of
one PyAV call per packet. Section numbers are ISO/IEC 14496-12:2015. Anything this module does
not read exactly as FFmpeg does raises `Unsupported`; the caller then demuxes with PyAV.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from exports.media import nal


class Unsupported(Exception):
    """A file whose packets this module cannot list exactly as FFmpeg would (say why)."""


VIDEO_CODECS = {b"avc1": "h264", b"hvc1": "hevc", b"hev1": "hevc", b"jpeg": "mjpeg"}
AAC_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
AAC_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8}
# FFmpeg's codec parameter enums for an unspecified colour (AVCOL_*_UNSPECIFIED)
UNSPECIFIED_COLOR = (0, 2, 2, 2)


@dataclass
class Track:
    """One track's description and per-sample arrays (decode order, track timescale)."""

    media: str  # "video" | "audio"
    codec: str
    timescale: int
    extradata: bytes = b""
    width: int = 0
    height: int = 0
    pix_fmt: str = ""
    color: tuple[int, int, int, int] = UNSPECIFIED_COLOR  # range, primaries, trc, matrix
    sample_rate: int = 0
    channels: int = 0
    frame_size: int = 0
    frame_rate: Fraction | None = None
    edits: list[tuple[int, int]] = field(default_factory=list)  # (segment duration, media time)
    dts: np.ndarray = None
    pts: np.ndarray = None
    duration: np.ndarray = None
    pos: np.ndarray = None
    size: np.ndarray = None
    key: np.ndarray = None


def read_moov(fd: int, file_size: int) -> bytes:
    """The payload of the top-level `moov` box (4.2, 8.2.1); Unsupported for fragmented files
    (`moof`, 8.8.4) or when there is no complete `moov`."""
    pos, moov = 0, None
    while pos + 8 <= file_size:
        head = os.pread(fd, 16, pos)
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1:
            if len(head) < 16:
                break
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:
            size = file_size - pos
        if size < header:
            raise Unsupported(f"bad box size at byte {pos}")
        if kind in (b"moof", b"mvex"):
            raise Unsupported("fragmented MP4")
        if kind == b"moov":
            if pos + size > file_size:
                raise Unsupported("the moov box is cut short")
            moov = os.pread(fd, size - header, pos + header)
        pos += size
    if moov is None:
        raise Unsupported("no moov box")
    if _find(moov, b"mvex") is not None:
        raise Unsupported("fragmented MP4")
    return moov


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload start, payload end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise Unsupported(f"box {kind!r} overruns its parent")
        yield kind, pos + header, pos + size
        pos += size


def _children(data: bytes, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    found: dict[bytes, list[tuple[int, int]]] = {}
    for kind, begin, finish in _boxes(data, start, end):
        found.setdefault(kind, []).append((begin, finish))
    return found


def _find(data: bytes, kind: bytes, start: int = 0, end: int | None = None):
    for found, begin, finish in _boxes(data, start, end):
        if found == kind:
            return begin, finish
    return None


def _path(data: bytes, start: int, end: int, *kinds: bytes) -> tuple[int, int]:
    for kind in kinds:
        span = _find(data, kind, start, end)
        if span is None:
            raise Unsupported(f"no {kind.decode()} box")
        start, end = span
    return start, end


def tracks(moov: bytes) -> list[Track]:
    """Every video and audio track of a moov payload (other handlers are skipped), timestamps
    as FFmpeg's demuxer gives them (edit list applied)."""
    mvhd = _path(moov, 0, len(moov), b"mvhd")
    movie_timescale = _timescale(moov, *mvhd)  # mvhd (8.2.2) lays it out as mdhd does
    found = []
    for kind, start, end in _boxes(moov):
        if kind != b"trak":
            continue
        track = _track(moov, start, end)
        if track is not None:
            _apply_edits(track, movie_timescale)
            found.append(track)
    return found


def _apply_edits(track: Track, movie_timescale: int) -> None:
    """FFmpeg (mov_fix_index) shifts a track by its edit's media_time. Only the one-edit case
    FFmpeg's muxers write is read: the edit covers the whole media, no video frame is shown
    before it (none would be dropped), and audio starts at most a second earlier (AAC priming:
    FFmpeg keeps those frames for the decoder). Everything else is Unsupported."""
    if not track.edits or not len(track.dts):
        return
    if len(track.edits) != 1 or track.edits[0][1] < 0:
        raise Unsupported(f"edit list {track.edits}")
    duration, media_time = track.edits[0]
    end = int(np.max(track.pts + track.duration))
    covered = Fraction(duration * track.timescale, movie_timescale)
    if duration and covered + Fraction(track.timescale, movie_timescale) < end - media_time:
        raise Unsupported("edit list ends before the media")
    if track.media == "video" and (np.min(track.pts) < media_time or not track.key[0]):
        raise Unsupported("edit list hides video frames")
    if track.media == "audio" and media_time > track.timescale:
        raise Unsupported("edit list skips more than a second of audio")
    track.dts = track.dts - media_time
    track.pts = track.pts - media_time


def _track(data: bytes, start: int, end: int) -> Track | None:
    mdia = _path(data, start, end, b"mdia")
    hdlr = _path(data, *mdia, b"hdlr")
    handler = data[hdlr[0] + 8 : hdlr[0] + 12]
    media = {b"vide": "video", b"soun": "audio"}.get(handler)
    if media is None:
        return None
    timescale = _timescale(data, *_path(data, *mdia, b"mdhd"))
    stbl = _path(data, *mdia, b"minf", b"stbl")
    boxes = _children(data, *stbl)
    track = _sample_entry(data, boxes, media, timescale)
    edts = _find(data, b"edts", start, end)
    if edts is not None:
        track.edits = _elst(data, *_path(data, *edts, b"elst"))
    _samples(data, boxes, track)
    return track


def _timescale(data: bytes, start: int, end: int) -> int:
    """mdhd (8.4.2) / mvhd: version 1 has 64-bit times before the 32-bit timescale."""
    offset = 20 if data[start] == 1 else 12
    timescale = struct.unpack_from(">I", data, start + offset)[0]
    if not timescale:
        raise Unsupported("mdhd timescale 0")
    return timescale


def _elst(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """elst (8.6.6): (segment_duration, media_time) per entry; rates other than 1 refused."""
    version = data[start]
    count = struct.unpack_from(">I", data, start + 4)[0]
    layout = ">QqhH" if version == 1 else ">IihH"
    step = struct.calcsize(layout)
    edits = []
    for index in range(count):
        duration, media_time, rate, _ = struct.unpack_from(layout, data, start + 8 + step * index)
        if rate != 1:
            raise Unsupported("edit list with a rate other than 1")
        edits.append((duration, media_time))
    return edits


# -- sample entries (8.5.2) --------------------------------------------------------------------


def _sample_entry(data: bytes, boxes: dict, media: str, timescale: int) -> Track:
    start, end = _one(boxes, b"stsd")
    count = struct.unpack_from(">I", data, start + 4)[0]
    if count != 1:
        raise Unsupported(f"{count} sample descriptions")
    (fourcc, entry_start, entry_end), *_ = _boxes(data, start + 8, end)
    if media == "video":
        return _visual_entry(data, fourcc, entry_start, entry_end, timescale)
    return _audio_entry(data, fourcc, entry_start, entry_end, timescale)


def _one(boxes: dict, kind: bytes) -> tuple[int, int]:
    spans = boxes.get(kind, [])
    if len(spans) != 1:
        raise Unsupported(f"{len(spans)} {kind.decode()} boxes")
    return spans[0]


def _visual_entry(data: bytes, fourcc: bytes, start: int, end: int, timescale: int) -> Track:
    codec = VIDEO_CODECS.get(fourcc)
    if codec is None:
        raise Unsupported(f"video sample entry {fourcc!r}")
    width, height = struct.unpack_from(">HH", data, start + 24)
    children = _children(data, start + 78, end)
    track = Track("video", codec, timescale, width=width, height=height)
    config = {"h264": b"avcC", "hevc": b"hvcC"}.get(codec)
    if config is not None:
        config_start, config_end = _one(children, config)
        track.extradata = data[config_start:config_end]
    if b"colr" in children:
        track.color = _colr(data, *children[b"colr"][0])
    if codec == "h264":
        track.color = _h264_vui_color(track.extradata, track.color)
    track.pix_fmt = _pix_fmt(codec, track.extradata, track.color[0])
    return track


def _colr(data: bytes, start: int, end: int) -> tuple[int, int, int, int]:
    """colr (12.1.5) 'nclx', or QuickTime 'nclc' (no range flag): as FFmpeg's codecpar."""
    kind = data[start : start + 4]
    if kind not in (b"nclx", b"nclc"):
        return UNSPECIFIED_COLOR
    primaries, trc, matrix = struct.unpack_from(">HHH", data, start + 4)
    color_range = 0
    if kind == b"nclx":
        color_range = 2 if data[start + 10] & 0x80 else 1  # AVCOL_RANGE_JPEG / _MPEG
    return color_range, primaries, trc, matrix


def _h264_vui_color(avcc: bytes, color: tuple[int, int, int, int]):
    """FFmpeg's H.264 decoder replaces the container's colour by the first SPS's VUI video
    signal type and colour description where present (H.264 E.1.1)."""
    sets = nal.avcc_parameter_sets(avcc)
    sps = next((unit for unit in sets if nal.h264_nal_type(unit) == nal.H264_SPS), None)
    if sps is None:
        raise Unsupported("avcC without an SPS")
    try:
        signal = _h264_video_signal(sps)
    except ValueError as error:
        raise Unsupported(f"SPS not read: {error}") from error
    if signal is None:
        return color
    full_range, description = signal
    color_range = 2 if full_range else 1  # AVCOL_RANGE_JPEG / _MPEG
    return (color_range, *(description or color[1:]))


def _h264_video_signal(sps: bytes):
    """(video_full_range_flag, (primaries, transfer, matrix) or None) from an SPS's VUI, or
    None without a video signal type (H.264 7.3.2.1.1, E.1.1)."""
    reader = nal.BitReader(nal.rbsp(sps[1:]))
    profile_idc = reader.bits(8)
    reader.bits(16)  # constraint flags, level_idc
    reader.ue()  # seq_parameter_set_id
    if profile_idc in nal._HIGH_PROFILES:
        if reader.ue() == 3:  # chroma_format_idc
            reader.bits(1)
        reader.ue(), reader.ue(), reader.bits(1)
        if reader.bits(1):
            for index in range(8):  # (12 only for 4:4:4, refused by _pix_fmt anyway)
                if reader.bits(1):
                    nal._skip_scaling_list(reader, 16 if index < 6 else 64)
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    if poc_type == 0:
        reader.ue()
    elif poc_type == 1:
        reader.bits(1)
        reader.se(), reader.se()
        for _ in range(reader.ue()):
            reader.se()
    reader.ue(), reader.bits(1), reader.ue(), reader.ue()  # refs, gaps, size in macroblocks
    if not reader.bits(1):  # frame_mbs_only_flag
        reader.bits(1)
    reader.bits(1)  # direct_8x8_inference_flag
    if reader.bits(1):  # frame_cropping_flag
        reader.ue(), reader.ue(), reader.ue(), reader.ue()
    if not reader.bits(1):  # vui_parameters_present_flag
        return None
    if reader.bits(1) and reader.bits(8) == 255:  # aspect_ratio_idc: Extended_SAR
        reader.bits(32)
    if reader.bits(1):  # overscan_info_present_flag
        reader.bits(1)
    if not reader.bits(1):  # video_signal_type_present_flag
        return None
    reader.bits(3)  # video_format
    full_range = bool(reader.bits(1))
    description = None
    if reader.bits(1):
        description = (reader.bits(8), reader.bits(8), reader.bits(8))
    return full_range, description


def _pix_fmt(codec: str, extradata: bytes, color_range: int) -> str:
    """The decoder's pixel format for the 8-bit 4:2:0 streams this path accepts."""
    if codec == "mjpeg":
        raise Unsupported("MJPEG pixel format needs the frame headers")
    if codec == "h264":
        profile = extradata[1]
        if profile in (100, 110, 122, 244) and len(extradata) > 6:
            chroma, depth = _avcc_format(extradata)
            if (chroma, depth) != (1, 8):
                raise Unsupported("H.264 other than 8-bit 4:2:0")
        elif profile not in (66, 77, 88, 100):
            raise Unsupported(f"H.264 profile {profile}")
        return "yuvj420p" if color_range == 2 else "yuv420p"
    if len(extradata) < 23 or (extradata[16] & 3, (extradata[17] & 7) + 8) != (1, 8):
        raise Unsupported("HEVC other than 8-bit 4:2:0")
    return "yuv420p"


def _avcc_format(extradata: bytes) -> tuple[int, int]:
    """chroma_format and bit depth from an avcC's high-profile extension (14496-15 5.3.3.1)."""
    pos = 6
    for _ in range(extradata[5] & 0x1F):
        pos += 2 + int.from_bytes(extradata[pos : pos + 2], "big")
    count, pos = extradata[pos], pos + 1
    for _ in range(count):
        pos += 2 + int.from_bytes(extradata[pos : pos + 2], "big")
    if pos + 2 > len(extradata):
        return 1, 8  # no extension written: the defaults (4:2:0, 8 bits)
    return extradata[pos] & 3, (extradata[pos + 1] & 7) + 8


def _audio_entry(data: bytes, fourcc: bytes, start: int, end: int, timescale: int) -> Track:
    if fourcc != b"mp4a":
        raise Unsupported(f"audio sample entry {fourcc!r}")
    version = struct.unpack_from(">H", data, start + 8)[0]
    children_at = start + 28 + {0: 0, 1: 16, 2: 36}.get(version, -1)
    if children_at < start + 28 or version == 2:
        raise Unsupported(f"sound sample description version {version}")
    config = _esds_config(data, children_at, end)
    object_type = config[0] >> 3 if config else 0
    if object_type != 2:  # AAC LC; others (SBR, PS, escapes) change what the decoder reports
        raise Unsupported(f"AAC audio object type {object_type}")
    frame_size = 960 if len(config) > 1 and config[1] & 0x04 else 1024  # frameLengthFlag
    # The decoder reports the AudioSpecificConfig's rate and channels (14496-3 1.6.2.1)
    rate_index, layout = ((config[0] & 7) << 1) | (config[1] >> 7), (config[1] >> 3) & 0xF
    if rate_index >= len(AAC_RATES) or layout not in AAC_CHANNELS:
        raise Unsupported("AAC config with an escaped rate or a channel layout in the PCE")
    return Track(
        "audio",
        "aac",
        timescale,
        extradata=config,
        sample_rate=AAC_RATES[rate_index],
        channels=AAC_CHANNELS[layout],
        frame_size=frame_size,
    )


def _esds_config(data: bytes, start: int, end: int) -> bytes:
    """The DecoderSpecificInfo (AudioSpecificConfig) of the esds box, also inside a QuickTime
    `wave` box (14496-1 7.2.6.5-7)."""
    children = _children(data, start, end)
    if b"wave" in children:
        children = _children(data, *children[b"wave"][0])
    esds_start, esds_end = _one(children, b"esds")
    pos, object_type = esds_start + 4, None
    while pos < esds_end:
        tag, pos = data[pos], pos + 1
        length = 0
        for _ in range(4):
            byte, pos = data[pos], pos + 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        if tag == 0x03:  # ES_Descriptor: ES_ID, flags (and what they announce)
            flags = data[pos + 2]
            pos += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
            if flags & 0x40:
                pos += 1 + data[pos]
        elif tag == 0x04:  # DecoderConfigDescriptor
            object_type = data[pos]
            pos += 13
        elif tag == 0x05:
            if object_type != 0x40:
                raise Unsupported(f"mp4a object type {object_type}")
            return data[pos : pos + length]
        else:
            pos += length
    raise Unsupported("esds without an AudioSpecificConfig")


# -- sample tables (8.6, 8.7) ------------------------------------------------------------------


def _table(data: bytes, span: tuple[int, int], header: int, columns: int, dtype: str):
    """The entry_count rows after a FullBox header (+ `header` more bytes) as an array."""
    start, end = span
    count = struct.unpack_from(">I", data, start + 4 + header)[0]
    begin = start + 8 + header
    width = np.dtype(dtype).itemsize * columns
    if begin + count * width > end:
        raise Unsupported("sample table overruns its box")
    rows = np.frombuffer(data, dtype=dtype, count=count * columns, offset=begin)
    return rows.reshape(count, columns).astype(np.int64)


def _samples(data: bytes, boxes: dict, track: Track) -> None:
    stts = _table(data, _one(boxes, b"stts"), 0, 2, ">u4")
    durations = np.repeat(stts[:, 1], stts[:, 0])
    count = len(durations)
    sizes = _sizes(data, boxes)
    if len(sizes) != count:
        raise Unsupported("stts and stsz count different samples")
    if b"ctts" in boxes:
        signed = data[_one(boxes, b"ctts")[0]] == 1
        ctts = _table(data, _one(boxes, b"ctts"), 0, 2, ">i4" if signed else ">u4")
        offsets = np.repeat(ctts[:, 1], ctts[:, 0])
        if len(offsets) != count:
            raise Unsupported("ctts counts different samples")
    else:
        offsets = np.zeros(count, dtype=np.int64)
    key = np.ones(count, dtype=bool)
    if b"stss" in boxes:
        key[:] = False
        numbers = _table(data, _one(boxes, b"stss"), 0, 1, ">u4")[:, 0] - 1
        key[numbers[(numbers >= 0) & (numbers < count)]] = True
    dts = np.concatenate(([0], np.cumsum(durations)[:-1])).astype(np.int64)
    track.duration, track.size, track.key = durations, sizes, key
    track.pos = _positions(data, boxes, sizes)
    track.dts, track.pts = dts, dts + offsets
    if track.media == "video":
        track.frame_rate = _average_rate(stts, track.timescale)


def _sizes(data: bytes, boxes: dict) -> np.ndarray:
    if b"stsz" in boxes:
        start, _ = _one(boxes, b"stsz")
        constant = struct.unpack_from(">I", data, start + 4)[0]
        if constant:
            raise Unsupported("constant sample size (FFmpeg packs such samples per chunk)")
        sizes = _table(data, _one(boxes, b"stsz"), 4, 1, ">u4")[:, 0]
        if np.any(sizes == 0):
            raise Unsupported("empty samples (the demuxer skips them)")
        return sizes
    raise Unsupported("no stsz (stz2 is not read)")


def _positions(data: bytes, boxes: dict, sizes: np.ndarray) -> np.ndarray:
    """Each sample's byte offset: chunks from stco/co64, samples per chunk from stsc (8.7.4)."""
    if b"co64" in boxes:
        chunks = _table(data, _one(boxes, b"co64"), 0, 1, ">u8")[:, 0]
    else:
        chunks = _table(data, _one(boxes, b"stco"), 0, 1, ">u4")[:, 0]
    stsc = _table(data, _one(boxes, b"stsc"), 0, 3, ">u4")
    if not len(stsc) or stsc[0, 0] != 1 or np.any(np.diff(stsc[:, 0]) <= 0):
        raise Unsupported("stsc does not start at chunk 1 or is not increasing")
    firsts = np.append(stsc[:, 0] - 1, len(chunks))
    runs = np.diff(firsts)
    if np.any(runs < 0):
        raise Unsupported("stsc names chunks past the chunk offset table")
    per_chunk = np.repeat(stsc[:, 1], runs)
    if per_chunk.sum() != len(sizes):
        raise Unsupported("stsc and stsz count different samples")
    chunk_of = np.repeat(np.arange(len(chunks)), per_chunk)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    first_sample = np.concatenate(([0], np.cumsum(per_chunk)[:-1]))
    into_chunk = starts - starts[first_sample][chunk_of] if len(sizes) else starts
    return chunks[chunk_of] + into_chunk


def _average_rate(stts: np.ndarray, timescale: int) -> Fraction | None:
    """avg_frame_rate as FFmpeg's mov demuxer sets it: samples per total stts duration."""
    total = int(np.sum(stts[:, 0] * stts[:, 1]))
    return Fraction(timescale * int(stts[:, 0].sum()), total) if total > 0 else None
