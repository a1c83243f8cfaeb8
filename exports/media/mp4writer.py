"""Write an MP4 or MOV file from byte ranges of other files (stream copy without a muxer).

Interface (the executor fills TrackTables from frame indexes and a plan)::

    write_tables(path, tracks, sources, brand="mp4", creation_time=None, title=None,
                 progress=None, cancelled=None) -> int   # bytes written
    write_mp4(path, [Track, ...], sources, ...)          # the same from whole per-sample arrays

- `TrackTables.add(dts, cts, duration, sync, size, source, offset, entry)` takes samples in
  decode order, a run at a time (see mp4tables.py: memory does not grow with the samples; a
  day's per-sample tables go to temporary files). `dts`/`cts` are on the output timeline in the
  track's `timescale`: a sample is presented at movie time `dts + cts` (all tracks share time 0,
  each in its own timescale), so the first dts may be negative (B-frame delay). The writer
  rebases the media so the first sample decodes at media time 0.
- `presentation_start` (same timeline): samples presented before it are hidden by the edit
  list; if it is above 0, an empty edit keeps the track at its place on the shared timeline.
  The usual values: 0 for video (first output pts 0, dts from -delay) and for audio.
- `sources[source]` holds a sample at `offset`, `size` bytes, in the exact form the sample
  entry needs (length-prefixed NAL units for h264/hevc, raw AAC frames); `SPOOL` (-1) names
  the last source (a spool file of new bytes, known only at the end).
- PCM (`pcm_s16le`, `pcm_mulaw`, `pcm_alaw`; mov only) samples are packets of whole PCM
  frames; `timescale` must be the sample rate and each duration the packet's frame count.
- `progress(fraction)` is called between copy pieces (<= 16 MiB, well under a second), at most
  every REPORT_SECONDS, and at the end with 1.0; it never goes backwards. `cancelled()` is
  polled as often; when it returns true the writer raises `WriteCancelled`.
- Bad input raises `Mp4WriteError` before anything is written; on any error the partly
  written file is removed.

Layout: `ftyp`, `moov`, `free`, `mdat` (the moov comes first so a browser can start playing
while downloading; its size is computed before the chunk offsets that depend on it). Chunks
follow the sources: a chunk ends where the next sample of the track is not the next byte of
the same source, where the stsd entry changes, where audio has a gap, or after CHUNK_SECONDS.
Chunks of all tracks are ordered by decode time, each source's chunks keeping their file order
(see _interleave), so audio and video interleave and chunks that were adjacent in a source
stay adjacent in the output: the mdat is then copied as a few large extents (typically one
per source file) with `os.copy_file_range` (see extentcopy.py).

Boxes written (ISO/IEC 14496-12:2015 sections; 14496-14/-15 for MPEG-4 codecs; QTFF = Apple's
QuickTime File Format for mov):

- `ftyp` FileTypeBox (4.3): mp4 `isom` 0x200 {isom, iso2, avc1, mp41}; mov `qt  ` 20050300.
- `moov` MovieBox (8.2.1)
  - `mvhd` MovieHeaderBox (8.2.2): timescale 1000, creation/modification time (seconds since
    1904), duration = longest track; version 1 when a value needs 64 bits.
  - `trak` TrackBox (8.3.1), one per track
    - `tkhd` TrackHeaderBox (8.3.2): flags 3 (enabled, in movie), duration of the edits.
    - `edts` EditBox (8.6.5) / `elst` EditListBox (8.6.6): [empty edit of presentation_start
      if > 0], one edit from media time `presentation_start - dts[0]` to the end of the last
      presented sample.
    - `mdia` MediaBox (8.4.1)
      - `mdhd` MediaHeaderBox (8.4.2): the track's timescale, duration, language `und`.
      - `hdlr` HandlerBox (8.4.3): `vide` / `soun` (mov: component type `mhlr`).
      - `minf` MediaInformationBox (8.4.4)
        - `vmhd` (12.1.2) or `smhd` (12.2.2); mov also a data handler `hdlr` (`dhlr`, QTFF).
        - `dinf` (8.7.1) / `dref` (8.7.2) / `url ` flags 1: media in this file.
        - `stbl` SampleTableBox (8.5.1)
          - `stsd` SampleDescriptionBox (8.5.2), one entry per SampleEntry:
            - `avc1` + `avcC` (14496-15 5.4.2.1 / 5.3.3.1),
            - `hvc1` (parameter sets only in hvcC) or `hev1` (also in-band) + `hvcC`
              (14496-15 8.4.1.1 / 8.3.3.1),
            - `jpeg` (QTFF Motion-JPEG; FFmpeg and GStreamer read it in mp4 too),
              video entries are VisualSampleEntry (12.1.3) with `colr` (12.1.5: `nclx`; mov
              `nclc`) when a colour tuple is given and `pasp` (12.1.4) when an aspect is;
            - `mp4a` AudioSampleEntry (12.2.3) + `esds` (14496-14 5.6, ES_Descriptor of
              14496-1 7.2.6.5 carrying the AudioSpecificConfig); in mov a version 1 sound
              description with `wave` {`frma`, `mp4a`, `esds`, terminator} and `chan`, as
              FFmpeg writes;
            - mov PCM: `sowt` (s16le), `ulaw`, `alaw` sound description version 0 (QTFF),
              with `chan`, one table sample per PCM frame.
          - `stts` TimeToSampleBox (8.6.1.2), run-length decode deltas.
          - `ctts` CompositionOffsetBox (8.6.1.3), version 0, only when a cts is not 0.
          - `stss` SyncSampleBox (8.6.2), omitted when every sample is a sync sample.
          - `stsc` SampleToChunkBox (8.7.4), with the stsd entry of each chunk.
          - `stsz` SampleSizeBox (8.7.3.2).
          - `stco` ChunkOffsetBox, `co64` ChunkLargeOffsetBox past 4 GiB (8.7.5).
  - `udta` UserDataBox (8.10.1) with the title: mov `©nam` (QTFF), mp4 `meta`/`ilst`/`©nam`.
- `free` FreeSpaceBox (8.1.2): pads so that the mdat payload starts on a 4 KiB boundary.
- `mdat` MediaDataBox (8.1.1), 64-bit size when larger than 4 GiB. Runs of samples of 256 KiB
  or more start at the same offset modulo 4 KiB as in their source (up to 4 KiB of zeros
  before them, outside every sample), so XFS/btrfs reflinks can share their blocks.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from . import mp4boxes as b
from .extentcopy import ExtentCopier
from .mp4tables import (
    CHUNK_SECONDS,
    SPOOL,
    VIDEO_CODECS,
    Mp4WriteError,
    SampleEntry,
    TrackTables,
)

__all__ = [
    "CHUNK_SECONDS",
    "SPOOL",
    "Mp4WriteError",
    "SampleEntry",
    "Track",
    "TrackTables",
    "WriteCancelled",
    "write_mp4",
    "write_tables",
]

MOVIE_TIMESCALE = 1000
COPY_PIECE = 16 << 20  # bytes per copy call: progress and cancel checks in between
BLOCK = 4096  # filesystem block: reflinks share whole blocks at equal offsets modulo this
ALIGN_MIN = 256 << 10  # runs this long are block-aligned like their source
REPORT_SECONDS = 0.2  # least time between two progress calls / cancel polls


class WriteCancelled(Exception):
    """`cancelled()` returned true while writing."""


@dataclass
class Track:
    """One output track given whole: its sample entries and, per sample in decode order,
    numpy arrays (the simple interface; `TrackTables` is filled piece by piece instead)."""

    media: str  # video | audio
    timescale: int
    entries: list[SampleEntry]
    dts: np.ndarray  # int64, strictly increasing
    cts: np.ndarray  # int32, pts - dts (>= 0)
    duration: np.ndarray  # int32
    sync: np.ndarray  # bool
    size: np.ndarray  # int32
    source: np.ndarray  # int32 index into `sources`
    offset: np.ndarray  # int64 byte offset in that source
    entry: np.ndarray  # uint8 stsd index (0-based) per sample
    presentation_start: int = 0

    def tables(self, number: int = 1, folder: Path | None = None) -> TrackTables:
        names = ("dts", "cts", "duration", "sync", "size", "source", "offset", "entry")
        tables = TrackTables(self.media, self.timescale, self.entries, number, folder)
        if len({len(getattr(self, name)) for name in names}) > 1:
            tables.fail("per-sample arrays differ in length")
        tables.add(*(getattr(self, name) for name in names))
        tables.presentation_start = self.presentation_start
        return tables


@dataclass
class Extents:
    """Byte runs to copy, in output order: from (source, offset), `length` bytes, to `target`
    in the mdat payload."""

    source: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    target: np.ndarray


@dataclass
class _Chunks:
    """A track's chunks: samples (PCM: frames), bytes, stsd entry, where they are (source and
    offset), first decode time, and their offset in the output."""

    count: np.ndarray
    nbytes: np.ndarray
    entry: np.ndarray
    source: np.ndarray
    offset: np.ndarray
    dts: np.ndarray
    out: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.count)


def write_mp4(path: Path, tracks: list[Track], sources: list[Path], *args, **options) -> int:
    """Write `tracks` (bytes taken from `sources`) to `path` as mp4 or mov; return its size.
    The other arguments are write_tables's (brand, creation_time, title, progress, cancelled)."""
    tables = [track.tables(number, Path(path).parent) for number, track in enumerate(tracks, 1)]
    try:
        return write_tables(path, tables, sources, *args, **options)
    finally:
        for table in tables:
            table.close()


def write_tables(
    path: Path,
    tracks: list[TrackTables],
    sources: list[Path],
    brand: str = "mp4",
    creation_time: datetime | None = None,
    title: str | None = None,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """`write_mp4` from tracks filled with `TrackTables.add` (the caller closes them)."""
    if brand not in ("mp4", "mov"):
        raise Mp4WriteError(f"brand must be mp4 or mov, not {brand!r}")
    if not tracks:
        raise Mp4WriteError("no tracks to write")
    for track in tracks:
        track.check(brand)
    chunks, runs = _layout(tracks, len(sources))
    data_size = int(runs.target[-1] + runs.length[-1])
    head = _header(tracks, chunks, brand, creation_time, title, data_size)
    head_size = sum(len(part) for part in head)
    try:
        with open(path, "wb") as out:
            out.writelines(_pieces(head))
            del head
            out.flush()
            _copy_samples(out.fileno(), head_size, runs, sources, progress, cancelled)
            out.truncate(head_size + data_size)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return head_size + data_size


# -- layout ---------------------------------------------------------------------------------


def _layout(tracks: list[TrackTables], source_count: int) -> tuple[list[_Chunks], Extents]:
    """The tracks' chunks, placed in the mdat, and the extents to copy there."""
    chunks = [_Chunks(**track.chunk_table(source_count)) for track in tracks]
    return chunks, _place(chunks, _interleave(tracks, chunks))


def _interleave(tracks: list[TrackTables], chunks: list[_Chunks]) -> np.ndarray:
    """Output order of all chunks as (track, chunk) rows: by time, keeping each source's order.

    A chunk's sort key is the latest decode time of the chunks before it in its source file (a
    running maximum), so chunks of one file keep their file order (and join into one extent)
    when the output timestamps differ slightly from the source's (e.g. a B-frame delay
    derived anew); a chunk more than CHUNK_SECONDS out of time order in its source (a file
    that is not interleaved) is placed by its own time instead, so playback stays progressive.
    """
    when = np.concatenate([c.dts / t.timescale for t, c in zip(tracks, chunks, strict=True)])
    source = np.concatenate([c.source for c in chunks])
    offset = np.concatenate([c.offset for c in chunks])
    track_of = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)])
    chunk_of = np.concatenate([np.arange(len(c)) for c in chunks])
    when = when - when.min()
    in_file = np.lexsort((offset, source))
    span = float(when.max()) + 1.0  # shifting each source by span restarts the maximum per file
    shifted = when[in_file] + source[in_file] * span
    latest = np.empty_like(when)
    latest[in_file] = np.maximum.accumulate(shifted) - source[in_file] * span
    key = np.where(latest - when <= CHUNK_SECONDS, latest, when)
    order = np.lexsort((offset, source, key))
    return np.column_stack((track_of[order], chunk_of[order]))


def _place(chunks: list[_Chunks], order: np.ndarray) -> Extents:
    """Lay the chunks out in the mdat payload in `order`; set their offsets (relative to the
    payload) and return the byte runs to copy.

    A run of ALIGN_MIN bytes or more starts at the same offset modulo BLOCK as in its source
    (zero bytes before it, at most BLOCK - 1, that no chunk points at), so on a filesystem with
    reflinks copy_file_range shares its blocks instead of copying them.
    """
    track_of, chunk_of = order[:, 0], order[:, 1]
    source = np.empty(len(order), np.int64)
    offset = np.empty(len(order), np.int64)
    length = np.empty(len(order), np.int64)
    for index, c in enumerate(chunks):
        mine = track_of == index
        picked = chunk_of[mine]
        source[mine] = c.source[picked]
        offset[mine] = c.offset[picked]
        length[mine] = c.nbytes[picked]
    joined = (source[1:] == source[:-1]) & (offset[1:] == offset[:-1] + length[:-1])
    starts = np.concatenate(([0], np.flatnonzero(~joined) + 1))
    runs = Extents(
        source[starts],
        offset[starts],
        np.add.reduceat(length, starts),
        np.empty(len(starts), np.int64),
    )
    position = 0
    for index, (run_offset, run_length) in enumerate(
        zip(runs.offset.tolist(), runs.length.tolist(), strict=True)
    ):
        if run_length >= ALIGN_MIN:
            position += (run_offset - position) % BLOCK
        runs.target[index] = position
        position += run_length
    run_of_chunk = np.cumsum(np.concatenate(([True], ~joined))) - 1
    target = runs.target[run_of_chunk] + offset - runs.offset[run_of_chunk]
    for index, c in enumerate(chunks):
        mine = track_of == index
        c.out = np.empty(len(c), np.int64)
        c.out[chunk_of[mine]] = target[mine]
    return runs


# -- moov -----------------------------------------------------------------------------------


def _header(tracks, chunks, brand, creation_time, title, data_size) -> list:
    """ftyp, moov, free, mdat header (the moov a container written piece by piece); the
    chunk offsets point into the mdat after them."""
    mov = brand == "mov"
    created = b.mac_time(creation_time)
    ftyp = b.ftyp(brand, {e.codec for t in tracks for e in t.entries})
    mdat_header = 16 if data_size + 8 > b.U32_MAX else 8
    traks = [
        _trak(i + 1, t, c, mov, created)
        for i, (t, c) in enumerate(zip(tracks, chunks, strict=True))
    ]
    duration = max(movie_duration for _, _, movie_duration in traks)
    moov = b.Container(b"moov", b.mvhd(created, MOVIE_TIMESCALE, duration, len(tracks) + 1))
    moov.children += [trak for trak, _, _ in traks]
    if title:
        moov.children.append(b.udta_title(title, mov))
    # The chunk offsets depend on the moov size, which depends on stco (32-bit) vs co64; a
    # `free` box then starts the mdat payload on a block boundary (see _place).
    largest = max(int(c.out.max()) for c in chunks)
    wide = False
    unpadded = len(ftyp) + len(moov) + mdat_header
    unpadded += sum(b.chunk_offsets_size(len(c), wide) for c in chunks)
    if unpadded + BLOCK + 8 + largest > b.U32_MAX:
        wide = True
        unpadded += sum(len(c) * 4 for c in chunks)
    free = b.box(b"free", bytes((-(unpadded + 8)) % BLOCK))
    base = unpadded + len(free)
    for (_, stbl, _), c in zip(traks, chunks, strict=True):
        stbl.children.append(b.chunk_offsets(c.out + base, wide))
    if mdat_header == 16:
        mdat = b.struct.pack(">I4sQ", 1, b"mdat", data_size + 16)
    else:
        mdat = b.struct.pack(">I4s", data_size + 8, b"mdat")
    head = [ftyp, moov, free, mdat]
    assert sum(len(part) for part in head) == base  # the offsets point where the mdat starts
    return head


def _pieces(parts: list):
    """The bytes of boxes (bytes or containers) in order, piece by piece."""
    for part in parts:
        if hasattr(part, "pieces"):
            yield from part.pieces()
        else:
            yield part


def _trak(track_id: int, track: TrackTables, chunks: _Chunks, mov: bool, created: int):
    """(trak box, its stbl awaiting the chunk offsets, the track's duration in the movie)."""
    audio = track.media == "audio"
    edits, movie_duration = _edits(track)
    first = track.entries[0]
    tkhd = b.tkhd(track_id, created, movie_duration, audio, first.width, first.height)
    handler = b.hdlr(
        b"soun" if audio else b"vide", "SoundHandler" if audio else "VideoHandler", mov
    )
    data_handler = [b.hdlr(b"url ", "DataHandler", mov, b"dhlr")] if mov else []
    stbl = b.Container(
        b"stbl",
        b.stsd([_sample_entry(e, track, track_id, mov) for e in track.entries]),
        *_sample_tables(track, chunks),
    )
    minf = b.Container(b"minf", b.media_header(audio), *data_handler, b.dinf(), stbl)
    mdhd = b.mdhd(created, track.timescale, track.media_duration)
    mdia = b.Container(b"mdia", mdhd, handler, minf)
    return b.Container(b"trak", tkhd, b.elst(edits), mdia), stbl, movie_duration


def _edits(track: TrackTables) -> tuple[list[tuple[int, int]], int]:
    """Edit list entries (movie timescale) and the track's duration in the movie."""

    def movie(value: int) -> int:
        return round(int(value) * MOVIE_TIMESCALE / track.timescale)

    start = int(track.presentation_start)
    edits = [(movie(start), -1)] if start > 0 else []
    edits.append((movie(track.presented_end - start), start - track.first_dts))
    return edits, sum(d for d, _ in edits)


def _sample_tables(track: TrackTables, chunks: _Chunks) -> list:
    """stts, [ctts], [stss], stsc, stsz for a track (stco comes later).

    QuickTime PCM: every PCM frame is a table sample of constant size (and a gap after a
    packet lengthens the delta of its last frame: see TrackTables._timing)."""
    tables = [b.stts(track.stts())]
    if track.offsets_nonzero:
        tables.append(b.ctts(track.offsets.close()))
    if not track.all_sync and not track.pcm:
        tables.append(b.stss(track.sync))
    tables.append(b.stsc(chunks.count, chunks.entry))
    if track.pcm:
        entry = track.entries[0]
        frame_bytes = b.PCM_BYTES[entry.codec] * entry.channels
        tables.append(b.stsz(None, constant=frame_bytes, count=track.units))
    else:
        tables.append(b.stsz(track.sizes))
    return tables


def _sample_entry(entry: SampleEntry, track: TrackTables, track_id: int, mov: bool) -> bytes:
    """One stsd entry (see the module docstring for the boxes)."""
    if entry.codec in VIDEO_CODECS:
        children = []
        if entry.codec == "h264":
            fourcc, children = b"avc1", [b.box(b"avcC", entry.extradata)]
        elif entry.codec == "hevc":
            fourcc = b"hev1" if entry.hevc_in_band else b"hvc1"
            children = [b.box(b"hvcC", entry.extradata)]
        else:
            fourcc = b"jpeg"
        if entry.color is not None:
            children.append(b.colr(entry.color, mov))
        if entry.pixel_aspect is not None:
            children.append(b.pasp(*entry.pixel_aspect))
        return b.visual_entry(fourcc, entry.width, entry.height, *children)
    if entry.codec in b.PCM_FOURCC:
        fourcc = b.PCM_FOURCC[entry.codec]
        return b.audio_entry_v0(fourcc, entry.channels, entry.sample_rate, *b.chan(entry.channels))
    esds = b.esds(track_id, entry.extradata, *track.bitrates())
    if mov:
        return b.mov_aac_entry(entry.channels, entry.sample_rate, esds)
    return b.audio_entry_v0(b"mp4a", entry.channels, entry.sample_rate, esds)


# -- mdat -----------------------------------------------------------------------------------


def _copy_samples(out_fd, base, runs: Extents, sources, progress, cancelled) -> None:
    total = int(runs.length.sum()) or 1
    copier = ExtentCopier(out_fd)
    files = _OpenSources(sources)
    report = _Reporter(progress, cancelled)
    done = 0
    columns = (runs.source, runs.offset, runs.length, runs.target)
    try:
        for src, start, size, target in zip(*(c.tolist() for c in columns), strict=True):
            fd = files.get(src)
            target += base
            while size > 0:
                report.check(done / total)
                piece = min(size, _piece(start))
                copier.copy(fd, start, target, piece)
                done, start, target, size = (
                    done + piece,
                    start + piece,
                    target + piece,
                    size - piece,
                )
        report.check(1.0, final=True)
    finally:
        files.close()


def _piece(start: int) -> int:
    """Bytes to copy from `start`: up to the next source block boundary first, then whole
    pieces, so the middle of an aligned run is copied block-aligned at both ends, which
    copy_file_range turns into shared blocks on XFS/btrfs (an unaligned call is copied)."""
    if COPY_PIECE <= BLOCK:
        return COPY_PIECE
    return -start % BLOCK or COPY_PIECE


class _Reporter:
    """Calls progress and polls cancel between copy pieces, at most every REPORT_SECONDS (a day
    of footage can be 10^5 small extents; the callbacks may touch a database)."""

    def __init__(self, progress, cancelled):
        self.progress, self.cancelled = progress, cancelled
        self.last = -math.inf

    def check(self, fraction: float, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < REPORT_SECONDS:
            return
        self.last = now
        if self.cancelled is not None and not final and self.cancelled():
            raise WriteCancelled("cancelled while writing")
        if self.progress is not None:
            self.progress(fraction)


class _OpenSources:
    """A few source files kept open (a day of 10 s segments would exceed the fd limit)."""

    KEEP = 8

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.open: dict[int, int] = {}

    def get(self, index: int) -> int:
        fd = self.open.pop(index, None)
        if fd is None:
            fd = os.open(self.paths[index], os.O_RDONLY)
            if len(self.open) >= self.KEEP:
                os.close(self.open.pop(next(iter(self.open))))
        self.open[index] = fd  # most recently used last
        return fd

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()
