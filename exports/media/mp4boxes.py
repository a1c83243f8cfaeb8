"""Serialise ISO BMFF / QuickTime boxes: headers, sample entries and sample tables.

Pure functions from values (and numpy arrays) to bytes; mp4writer.py decides what goes where.
Section numbers are ISO/IEC 14496-12:2015 unless said otherwise; "QTFF" is Apple's QuickTime
File Format specification. Per-sample tables (stts, ctts, stss, stsz) take their rows already
in the box's layout as "rows": an object with `count` (rows), `len()` (bytes) and `pieces()`
(the bytes, piece by piece; mp4tables.Column, which may hold them in a temporary file), so a
day of samples is never one more copy in memory.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import numpy as np

U32_MAX = 0xFFFFFFFF
EPOCH_1904 = datetime(1904, 1, 1, tzinfo=UTC)
MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)  # unity
LANGUAGE_UND = 0x55C4  # ISO-639-2/T "und", packed (8.4.2.3)
PCM_FOURCC = {"pcm_s16le": b"sowt", "pcm_mulaw": b"ulaw", "pcm_alaw": b"alaw"}
PCM_BYTES = {"pcm_s16le": 2, "pcm_mulaw": 1, "pcm_alaw": 1}


def box(kind: bytes, *payload: bytes) -> bytes:
    """A box (4.2): 32-bit size, type, payload (64-bit size when large)."""
    body = b"".join(payload)
    size = 8 + len(body)
    if size > U32_MAX:
        return struct.pack(">I4sQ", 1, kind, size + 8) + body
    return struct.pack(">I4s", size, kind) + body


class Container:
    """A box kept as its children (bytes, Containers or rows) and written piece by piece, so a
    moov with a day of sample tables is never joined into one more copy of itself."""

    def __init__(self, kind: bytes, *children):
        self.kind = kind
        self.children = list(children)

    def __len__(self) -> int:
        return 8 + sum(len(child) for child in self.children)

    def pieces(self):
        """The box's bytes, in order, as the pieces it was built from."""
        yield struct.pack(">I4s", len(self), self.kind)
        for child in self.children:
            if hasattr(child, "pieces"):
                yield from child.pieces()
            else:
                yield child


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A FullBox (4.2): a box whose payload starts with version (8 bits) and flags (24)."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def mac_time(when: datetime | None) -> int:
    """Seconds since 1904-01-01 UTC, the epoch of mvhd/tkhd/mdhd times."""
    if when is None:
        return 0
    return max(0, int((when.astimezone(UTC) - EPOCH_1904).total_seconds()))


def needs_v1(*values: int) -> bool:
    return any(v > U32_MAX or v < 0 for v in values)


# -- file and movie level -----------------------------------------------------------------


def ftyp(brand: str, codecs: set[str]) -> bytes:
    """FileTypeBox (4.3): the brands FFmpeg's movenc writes for the same content."""
    if brand == "mov":
        return box(b"ftyp", b"qt  ", struct.pack(">I", 0x20050300), b"qt  ")
    compatible = [b"isom", b"iso2"] + ([b"avc1"] if "h264" in codecs else []) + [b"mp41"]
    return box(b"ftyp", b"isom", struct.pack(">I", 0x200), *compatible)


def mvhd(created: int, timescale: int, duration: int, next_track_id: int) -> bytes:
    """MovieHeaderBox (8.2.2)."""
    v1 = needs_v1(created, duration)
    times = (
        struct.pack(">QQIQ", created, created, timescale, duration)
        if v1
        else struct.pack(">IIII", created, created, timescale, duration)
    )
    return full_box(
        b"mvhd",
        int(v1),
        0,
        times,
        struct.pack(">iH10x", 0x10000, 0x100),  # rate 1.0, volume 1.0, reserved
        MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", next_track_id),
    )


def tkhd(track_id: int, created: int, duration: int, audio: bool, width: int, height: int) -> bytes:
    """TrackHeaderBox (8.3.2); flags 3 = enabled and in the movie."""
    v1 = needs_v1(created, duration)
    times = (
        struct.pack(">QQI4xQ", created, created, track_id, duration)
        if v1
        else struct.pack(">IIIII", created, created, track_id, 0, duration)
    )
    return full_box(
        b"tkhd",
        int(v1),
        3,
        times,
        struct.pack(">8xhhH2x", 0, 0, 0x100 if audio else 0),  # layer, group, volume
        MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )


def elst(edits: list[tuple[int, int]]) -> bytes:
    """EditBox (8.6.5) with an EditListBox (8.6.6): (segment_duration, media_time) at rate 1.

    media_time -1 is an empty edit (nothing shown for that long).
    """
    v1 = needs_v1(*[d for d, _ in edits]) or any(abs(t) > 0x7FFFFFFF for _, t in edits)
    fmt = ">Qqhh" if v1 else ">Iihh"
    body = b"".join(struct.pack(fmt, d, t, 1, 0) for d, t in edits)
    return box(b"edts", full_box(b"elst", int(v1), 0, struct.pack(">I", len(edits)), body))


def mdhd(created: int, timescale: int, duration: int) -> bytes:
    """MediaHeaderBox (8.4.2)."""
    v1 = needs_v1(created, duration)
    times = (
        struct.pack(">QQIQ", created, created, timescale, duration)
        if v1
        else struct.pack(">IIII", created, created, timescale, duration)
    )
    return full_box(b"mdhd", int(v1), 0, times, struct.pack(">HH", LANGUAGE_UND, 0))


def hdlr(handler: bytes, name: str, mov: bool, component: bytes = b"mhlr") -> bytes:
    """HandlerBox (8.4.3); in QuickTime a component type and a Pascal-string name (QTFF)."""
    text = name.encode()
    name_field = bytes([len(text)]) + text if mov else text + b"\0"
    return full_box(b"hdlr", 0, 0, component if mov else bytes(4), handler, bytes(12), name_field)


def media_header(audio: bool) -> bytes:
    """VideoMediaHeaderBox (12.1.2, flags 1) or SoundMediaHeaderBox (12.2.2)."""
    if audio:
        return full_box(b"smhd", 0, 0, struct.pack(">hH", 0, 0))
    return full_box(b"vmhd", 0, 1, struct.pack(">HHHH", 0, 0, 0, 0))


def dinf() -> bytes:
    """DataInformationBox (8.7.1) with a DataReferenceBox (8.7.2): media in this file."""
    url = full_box(b"url ", 0, 1)
    return box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), url))


def udta_title(title: str, mov: bool) -> bytes:
    """UserDataBox (8.10.1) with the title: QuickTime `©nam` text, or an iTunes-style ilst."""
    text = title.encode()
    if mov:  # QTFF user data text: length, language, UTF-8 text
        return box(b"udta", box(b"\xa9nam", struct.pack(">HH", len(text), LANGUAGE_UND), text))
    data = box(b"data", struct.pack(">II", 1, 0), text)  # type 1 = UTF-8
    meta = full_box(
        b"meta",
        0,
        0,
        full_box(b"hdlr", 0, 0, bytes(4), b"mdir", b"appl", bytes(9)),
        box(b"ilst", box(b"\xa9nam", data)),
    )
    return box(b"udta", meta)


# -- sample entries (8.5.2) ---------------------------------------------------------------


def visual_entry(fourcc: bytes, width: int, height: int, *children: bytes) -> bytes:
    """VisualSampleEntry (12.1.3) followed by its codec configuration boxes."""
    return box(
        fourcc,
        bytes(6),
        struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16),  # pre_defined/reserved (QuickTime: version, revision, vendor, qualities)
        struct.pack(">HHII4xH", width, height, 0x480000, 0x480000, 1),  # 72 dpi, 1 frame
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),  # depth, pre_defined
        *children,
    )


def colr(color: tuple[int, int, int, int], mov: bool) -> bytes:
    """ColourInformationBox (12.1.5): `nclx` (QuickTime `nclc`, which has no range flag).

    `color` is FFmpeg's (range, primaries, trc, matrix); FFmpeg numbers primaries, transfer
    and matrix with the ISO/IEC 23091-2 code points, and range 2 (AVCOL_RANGE_JPEG) is full.
    """
    value_range, primaries, trc, matrix = color
    numbers = struct.pack(">HHH", primaries or 2, trc or 2, matrix or 2)
    if mov:
        return box(b"colr", b"nclc", numbers)
    return box(b"colr", b"nclx", numbers, bytes([0x80 if value_range == 2 else 0]))


def pasp(h_spacing: int, v_spacing: int) -> bytes:
    """PixelAspectRatioBox (12.1.4)."""
    return box(b"pasp", struct.pack(">II", h_spacing, v_spacing))


def chan(channels: int) -> list[bytes]:
    """QuickTime channel layout atom (QTFF `chan`) for mono/stereo, as FFmpeg writes in mov;
    without it FFmpeg guesses the layout when reading."""
    tags = {1: (100 << 16) | 1, 2: (101 << 16) | 2}  # kAudioChannelLayoutTag_Mono / _Stereo
    if channels not in tags:
        return []
    return [full_box(b"chan", 0, 0, struct.pack(">III", tags[channels], 0, 0))]


def audio_entry_v0(
    fourcc: bytes, channels: int, sample_rate: int, *children: bytes, sample_bits: int = 16
) -> bytes:
    """AudioSampleEntry (12.2.3) = QuickTime sound description version 0 (QTFF)."""
    return box(
        fourcc,
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),  # reserved (QuickTime: version 0, revision, vendor)
        struct.pack(">HHhHI", channels, sample_bits, 0, 0, sample_rate << 16),
        *children,
    )


def esds(
    track_id: int, config: bytes, buffer_size: int, max_bitrate: int, avg_bitrate: int
) -> bytes:
    """ESDBox (ISO/IEC 14496-14 5.6): ES_Descriptor (14496-1 7.2.6.5) for AAC.

    Descriptor lengths use the 4-byte form, as FFmpeg writes them.
    """

    def descriptor(tag: int, body: bytes) -> bytes:
        n = len(body)
        size = bytes(
            [0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F, 0x80 | (n >> 7) & 0x7F, n & 0x7F]
        )
        return bytes([tag]) + size + body

    decoder_config = descriptor(
        0x04,
        # objectTypeIndication 0x40 (MPEG-4 audio), streamType 5 (audio) << 2 | reserved 1
        struct.pack(">BB", 0x40, 0x15)
        + buffer_size.to_bytes(3, "big")
        + struct.pack(">II", max_bitrate, avg_bitrate)
        + descriptor(0x05, config),  # DecoderSpecificInfo = AudioSpecificConfig
    )
    es = descriptor(
        0x03, struct.pack(">HB", track_id, 0) + decoder_config + descriptor(0x06, b"\x02")
    )  # SLConfigDescriptor, predefined 2 (MP4)
    return full_box(b"esds", 0, 0, es)


def mov_aac_entry(
    channels: int, sample_rate: int, esds_box: bytes, frame_size: int = 1024
) -> bytes:
    """QuickTime sound description version 1 with a `wave` atom holding the esds (QTFF).

    This is what FFmpeg's movenc writes for AAC in mov: compression id -2, samples per packet.
    """
    wave = box(b"wave", box(b"frma", b"mp4a"), box(b"mp4a", bytes(4)), esds_box, bytes(8))
    layout = chan(channels)
    return box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        struct.pack(">HH4s", 1, 0, bytes(4)),  # version 1, revision, vendor
        struct.pack(">HHhHI", channels, 16, -2, 0, sample_rate << 16),
        struct.pack(">IIII", frame_size, 0, 0, 2),
        wave,
        *layout,
    )


def stsd(entries: list[bytes]) -> bytes:
    """SampleDescriptionBox (8.5.2)."""
    return full_box(b"stsd", 0, 0, struct.pack(">I", len(entries)), *entries)


# -- sample tables ------------------------------------------------------------------------


def _table(kind: bytes, rows, prefix: bytes = b"") -> Container:
    """A FullBox (version 0) of `rows.count` rows: kept unjoined, the table can be large."""
    return Container(kind, struct.pack(">I", 0) + prefix + struct.pack(">I", rows.count), rows)


def stts(rows) -> Container:
    """TimeToSampleBox (8.6.1.2): rows of (sample count, decode delta), u32 each."""
    return _table(b"stts", rows)


def ctts(rows) -> Container:
    """CompositionOffsetBox (8.6.1.3), version 0: rows of (sample count, offset >= 0)."""
    return _table(b"ctts", rows)


def stss(rows) -> Container:
    """SyncSampleBox (8.6.2): rows of 1-based sync sample numbers."""
    return _table(b"stss", rows)


def stsz(rows, constant: int = 0, count: int = 0) -> Container:
    """SampleSizeBox (8.7.3.2): one size for all `count` samples (rows None), or a row each."""
    if rows is None:
        return _table(b"stsz", _NoRows(count), prefix=struct.pack(">I", constant))
    return _table(b"stsz", rows, prefix=bytes(4))


class _NoRows:
    """A table of `count` samples that has no rows (stsz with a constant size)."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return 0

    def pieces(self):
        return iter(())


def stsc(samples_per_chunk: np.ndarray, entry_index: np.ndarray) -> Container:
    """SampleToChunkBox (8.7.4): a row where samples-per-chunk or the stsd entry changes."""
    key = samples_per_chunk.astype(np.int64) << 8 | entry_index
    starts = np.concatenate(([0], np.flatnonzero(key[1:] != key[:-1]) + 1))
    table = np.empty((len(starts), 3), dtype=">u4")
    table[:, 0] = starts + 1  # first_chunk, 1-based
    table[:, 1] = samples_per_chunk[starts]
    table[:, 2] = entry_index[starts] + 1  # sample_description_index, 1-based
    return _table(b"stsc", _Rows(table))


def chunk_offsets_size(count: int, wide: bool) -> int:
    """Bytes of the stco/co64 box for `count` chunks (the moov size is known before offsets)."""
    return 16 + count * (8 if wide else 4)


def chunk_offsets(offsets: np.ndarray, wide: bool) -> Container:
    """ChunkOffsetBox `stco` or, for offsets past 4 GiB, ChunkLargeOffsetBox `co64` (8.7.5)."""
    if wide:
        return _table(b"co64", _Rows(offsets.astype(">u8")))
    if len(offsets) and int(offsets.max()) > U32_MAX:
        raise OverflowError("chunk offset past 4 GiB needs co64")
    return _table(b"stco", _Rows(offsets.astype(">u4")))


class _Rows:
    """Rows held as one numpy array in the box's byte order (per-chunk tables)."""

    def __init__(self, table: np.ndarray):
        self.count = len(table)
        self.data = table.tobytes()

    def __len__(self) -> int:
        return len(self.data)

    def pieces(self):
        yield self.data
