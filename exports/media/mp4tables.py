"""One output track's sample tables for the direct MP4/MOV writer, filled a run of samples at a
time in decode order, in memory that does not grow with the length of the export.

A day of footage is about 6 million samples (25 video frames and 47 AAC frames a second). The
writer needs, per sample, only what its boxes hold: the size (`stsz`), the decode delta and
composition offset run-lengths (`stts`, `ctts`) and the numbers of sync samples (`stss`); the
byte positions matter only per chunk (`stco`, and the extents to copy). So `TrackTables.add`
folds each run of samples into:

- `Column`s of rows in the boxes' own big-endian layout (sizes, sync sample numbers, run-length
  pairs), buffered in memory up to SPILL_ROWS rows and then appended to an unnamed temporary
  file; the moov streams them back from there (`pieces`);
- a chunk list in memory (a few rows a second: see `_ChunkList`), from which the writer lays out
  the mdat;
- running figures: first and last decode time, end of presentation, bytes, largest sample,
  busiest second (the esds bitrates).

Samples are checked as they come; anything the boxes cannot say raises `Mp4WriteError`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import mp4boxes as b

CHUNK_SECONDS = 1.0
SPILL_ROWS = 1 << 16  # rows a Column keeps in memory before moving them to its file
READ_ROWS = 1 << 20  # rows read back per piece when the moov is written
VIDEO_CODECS = {"h264", "hevc", "mjpeg"}
AUDIO_CODECS = {"aac", *b.PCM_FOURCC}
SPOOL = -1  # source index meaning "the last of the writer's sources" (a spool file added last)


class Mp4WriteError(ValueError):
    """The tracks cannot be written as given (the message says why)."""


@dataclass
class SampleEntry:
    """One stsd entry; a track may have several (e.g. an SPS change between segments)."""

    codec: str  # h264 | hevc | mjpeg | aac | pcm_s16le | pcm_mulaw | pcm_alaw
    extradata: bytes = b""  # avcC / hvcC record / AudioSpecificConfig
    width: int = 0
    height: int = 0
    color: tuple[int, int, int, int] | None = None  # range, primaries, trc, matrix -> colr
    sample_rate: int = 0
    channels: int = 0
    hevc_in_band: bool = False  # -> `hev1` instead of `hvc1`
    pixel_aspect: tuple[int, int] | None = None  # -> `pasp` (horizontal, vertical spacing)


class Column:
    """Rows of one numpy dtype, appended; past SPILL_ROWS they live in a temporary file.

    Stored already in the box's byte order, so writing the box is copying bytes back."""

    def __init__(self, dtype, width: int = 1, folder: Path | None = None):
        self.dtype = np.dtype(dtype)
        self.folder = folder  # of the temporary file (None: the system's temporary folder)
        self.width = width  # values per row
        self.count = 0
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.file = None

    def append(self, rows) -> None:
        rows = np.asarray(rows).astype(self.dtype, copy=False)
        if rows.ndim != (1 if self.width == 1 else 2):
            raise ValueError("rows of the wrong shape")
        if not len(rows):
            return
        self.buffer.append(rows)
        self.buffered += len(rows)
        self.count += len(rows)
        if self.buffered >= SPILL_ROWS:
            self._spill()

    def _spill(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=self.folder)  # noqa: SIM115 - see close()
        self.file.seek(0, 2)
        for rows in self.buffer:
            self.file.write(rows.tobytes())
        self.buffer, self.buffered = [], 0

    def __len__(self) -> int:
        """Bytes of all rows."""
        return self.count * self.width * self.dtype.itemsize

    def pieces(self):
        """All rows as bytes, a bounded piece at a time."""
        if self.file is None:
            yield b"".join(rows.tobytes() for rows in self.buffer)
            return
        self._spill()
        self.file.seek(0)
        while piece := self.file.read(READ_ROWS * self.width * self.dtype.itemsize):
            yield piece

    def close(self) -> None:
        self.buffer = []
        if self.file is not None:
            self.file.close()
            self.file = None


class Runs:
    """Run-length rows (count, value) of a per-sample value, merged as values come."""

    def __init__(self, folder: Path | None = None):
        self.rows = Column(">u4", 2, folder)
        self.pending = (0, 0)  # the last run: it may still grow

    def add(self, counts: np.ndarray, values: np.ndarray) -> None:
        keep = counts > 0
        counts, values = counts[keep].astype(np.int64), values[keep].astype(np.int64)
        if not len(counts):
            return
        starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))
        counts, values = np.add.reduceat(counts, starts), values[starts]
        count, value = self.pending
        if count and value == values[0]:
            counts[0] += count
        elif count:
            self.rows.append([[count, value]])
        self.rows.append(np.column_stack((counts[:-1], values[:-1])))
        self.pending = (int(counts[-1]), int(values[-1]))

    def close(self) -> Column:
        if self.pending[0]:
            self.rows.append([self.pending])
            self.pending = (0, 0)
        return self.rows


class _ChunkList:
    """The track's chunks: samples (PCM: frames), bytes, stsd entry, source, offset there, first
    decode time. Kept as the arrays each `add` made; the last chunk may grow with the next."""

    FIELDS = ("count", "nbytes", "entry", "source", "offset", "dts")

    def __init__(self):
        self.parts = {name: [] for name in self.FIELDS}

    def add(self, **columns) -> None:
        for name in self.FIELDS:
            self.parts[name].append(np.asarray(columns[name], np.int64))

    def grow_last(self, count: int, nbytes: int) -> None:
        self.parts["count"][-1][-1] += count
        self.parts["nbytes"][-1][-1] += nbytes

    def joined(self) -> dict[str, np.ndarray]:
        """All chunks, one array per field; the pieces are let go field by field (and so can
        be read once only)."""
        joined = {}
        for name in self.FIELDS:
            joined[name] = np.concatenate(self.parts[name])
            self.parts[name] = []
        return joined


@dataclass
class _Last:
    """What the next run of samples is compared with (chunk breaks, decode order, deltas)."""

    dts: int
    units: int  # table samples of the last sample: its PCM frames, else 1
    duration: int
    source: int
    end: int  # byte after it in its source
    entry: int
    bucket: int


class TrackTables:
    """One output track: its sample entries and its sample tables, filled by `add`."""

    def __init__(
        self,
        media: str,
        timescale: int,
        entries: list[SampleEntry],
        number: int = 1,
        folder: Path | None = None,
    ):
        """`folder`: where tables spill (beside the output: /tmp may be memory, a tmpfs)."""
        self.media, self.timescale, self.entries, self.number = media, timescale, entries, number
        if media not in ("video", "audio") or timescale <= 0:
            self.fail("needs a positive timescale and at least one sample entry")
        self.presentation_start = 0
        self.samples = 0  # as added (PCM: packets)
        self.units = 0  # table samples (PCM: frames)
        self.sizes = Column(">u4", 1, folder)
        self.deltas = Runs(folder)
        self.offsets = Runs(folder)  # composition offsets (ctts), written if one is not 0
        self.offsets_nonzero = False
        self.sync = Column(">u4", 1, folder)  # 1-based numbers, only once a sample is not sync
        self.synced = 0
        self.chunks = _ChunkList()
        self.first_dts = 0
        self.last: _Last | None = None
        self.presented_end = 0  # latest dts + cts + duration
        self.bytes = 0
        self.largest = 0
        self.busiest = (0, 0, 0)  # (second, its bytes, the most bytes of a whole second)
        self.timed = False  # the last sample's delta is in `deltas`

    @property
    def pcm(self) -> bool:
        return bool(self.entries) and self.entries[0].codec in b.PCM_FOURCC

    def fail(self, why: str):
        raise Mp4WriteError(f"track {self.number} ({self.media}): {why}")

    # -- filling --

    def add(self, dts, cts, duration, sync, size, source, offset, entry) -> None:
        """Samples in decode order; each argument an array of one value per sample or a scalar.

        dts/cts/duration in the track's timescale (presented at dts + cts); size bytes at
        `offset` in `sources[source]` (SPOOL: the writer's last source); entry: stsd index."""
        dts = np.atleast_1d(np.asarray(dts, np.int64))
        n = len(dts)
        if not n:
            return
        cts, duration, size, source, offset, entry = (
            np.broadcast_to(np.asarray(v, np.int64), (n,))
            for v in (cts, duration, size, source, offset, entry)
        )
        sync = np.broadcast_to(np.asarray(sync, bool), (n,))
        self._check(dts, cts, duration, size, source, offset, entry)
        units = duration if self.pcm else np.ones(n, np.int64)
        if self.last is None:
            self.first_dts = int(dts[0])
        self._timing(dts, units)
        self._chunk(dts, duration, size, source, offset, entry, units)
        self._sync(sync)
        if not self.pcm:
            self.sizes.append(size)
            self.offsets.add(np.ones(n, np.int64), cts)
            self.offsets_nonzero = self.offsets_nonzero or bool(cts.any())
        self._figures(dts, cts, duration, size)
        self.samples += n
        self.units += int(units.sum())
        last = n - 1
        self.last = _Last(
            int(dts[last]),
            int(units[last]),
            int(duration[last]),
            int(source[last]),
            int(offset[last] + size[last]),
            int(entry[last]),
            self._bucket(dts[last:])[0],
        )

    def _check(self, dts, cts, duration, size, source, offset, entry) -> None:
        if (np.diff(dts) <= 0).any() or (self.last is not None and dts[0] <= self.last.dts):
            self.fail("decode times must be strictly increasing")
        if cts.min() < 0:
            self.fail("composition offsets must be >= 0 (pts >= dts)")
        if size.min() < 0 or offset.min() < 0:
            self.fail("negative size or offset, or a last sample without duration")
        if source.min() < SPOOL:
            self.fail("source index out of range")
        if entry.min() < 0 or entry.max() >= min(len(self.entries), 256):
            self.fail("sample entry index out of range")
        if self.pcm:
            entry = self.entries[0]
            frame_bytes = b.PCM_BYTES[entry.codec] * entry.channels
            if (size % frame_bytes).any() or (size // frame_bytes != duration).any():
                self.fail("PCM packet sizes must be whole frames matching their durations")
            if cts.any():
                self.fail("PCM samples have no composition offset")

    def _timing(self, dts, units) -> None:
        """stts rows: a sample's delta is the next one's dts minus its own, so the last sample
        of a run waits for the next run (or `close`). A PCM packet of k frames is k table
        samples: k - 1 of delta 1, then one taking the rest up to the next packet."""
        if self.last is not None:
            dts = np.concatenate(([self.last.dts], dts))
            units = np.concatenate(([self.last.units], units))
        after = np.diff(dts)
        units = units[:-1]
        rows = np.column_stack(
            (units - 1, np.ones_like(units), np.ones_like(units), after - units + 1)
        )
        self.deltas.add(rows[:, 0::2].ravel(), rows[:, 1::2].ravel())

    def _bucket(self, dts) -> np.ndarray:
        step = max(1, round(self.timescale * CHUNK_SECONDS))
        return (dts - self.first_dts) // step

    def _chunk(self, dts, duration, size, source, offset, entry, units) -> None:
        """A chunk ends where the next sample is not the next byte of the same source, the
        stsd entry changes, a CHUNK_SECONDS bucket ends, or (audio) the timing has a gap:
        demuxers time a PCM chunk's samples from its first one."""
        bucket = self._bucket(dts)
        last = self.last
        starts = np.empty(len(dts), bool)
        starts[1:] = (source[1:] != source[:-1]) | (offset[1:] != offset[:-1] + size[:-1])
        starts[1:] |= (entry[1:] != entry[:-1]) | (bucket[1:] != bucket[:-1])
        if self.media == "audio":
            starts[1:] |= dts[1:] != dts[:-1] + duration[:-1]
        starts[0] = (
            last is None
            or (int(source[0]), int(offset[0]), int(entry[0]), int(bucket[0]))
            != (last.source, last.end, last.entry, last.bucket)
            or (self.media == "audio" and int(dts[0]) != last.dts + last.duration)
        )
        first = np.flatnonzero(starts)
        if not starts[0]:
            head = first[0] if len(first) else len(dts)
            self.chunks.grow_last(int(units[:head].sum()), int(size[:head].sum()))
        if not len(first):
            return
        self.chunks.add(
            count=np.add.reduceat(units, first),
            nbytes=np.add.reduceat(size, first),
            entry=entry[first],
            source=source[first],
            offset=offset[first],
            dts=dts[first],
        )

    def _sync(self, sync) -> None:
        """stss numbers are kept only once some sample is not a sync sample."""
        if sync.all() and self.all_sync:
            self.synced += len(sync)
            return
        if self.all_sync:
            for start in range(0, self.samples, READ_ROWS):
                self.sync.append(np.arange(start, min(start + READ_ROWS, self.samples)) + 1)
        self.sync.append(np.flatnonzero(sync) + self.samples + 1)
        self.synced += int(sync.sum())

    def _figures(self, dts, cts, duration, size) -> None:
        self.presented_end = max(self.presented_end, int((dts + cts + duration).max()))
        self.bytes += int(size.sum())
        self.largest = max(self.largest, int(size.max()))
        second, held, most = self.busiest
        seconds = (dts - self.first_dts) // self.timescale
        starts = np.concatenate(([0], np.flatnonzero(seconds[1:] != seconds[:-1]) + 1))
        sums = np.add.reduceat(size, starts)
        if int(seconds[0]) == second:
            sums[0] += held
        most = max(most, int(sums.max()))
        self.busiest = (int(seconds[-1]), int(sums[-1]), most)

    # -- reading, once everything is added --

    def check(self, brand: str) -> None:
        """What only the whole track can show (before anything is written)."""
        if not self.entries:
            self.fail("needs a positive timescale and at least one sample entry")
        if self.last is None:
            self.fail("no samples")
        if self.last.duration <= 0:
            self.fail("negative size or offset, or a last sample without duration")
        if self.presentation_start < self.first_dts or self.presentation_start < 0:
            self.fail("presentation_start must be >= 0 and >= the first dts")
        codecs = {entry.codec for entry in self.entries}
        allowed = VIDEO_CODECS if self.media == "video" else AUDIO_CODECS
        if not codecs <= allowed:
            self.fail(f"cannot write {', '.join(sorted(codecs))} as {self.media}")
        if codecs & set(b.PCM_FOURCC):
            if brand != "mov" or len(codecs) > 1:
                self.fail("PCM is written to mov only, and alone in its track")
            entry = self.entries[0]
            if entry.sample_rate != self.timescale or entry.sample_rate > 0xFFFF:
                self.fail("PCM needs timescale = sample rate (at most 65535 Hz)")

    def chunk_table(self, source_count: int) -> dict[str, np.ndarray]:
        """The chunks, with SPOOL resolved to the last source (once: see _ChunkList.joined)."""
        table = self.chunks.joined()
        table["source"][table["source"] == SPOOL] = source_count - 1
        if table["source"].max() >= source_count or table["source"].min() < 0:
            self.fail("source index out of range")
        return table

    def stts(self) -> Column:
        """The stts rows; the last sample's delta is its duration."""
        if not self.timed:
            units, duration = self.last.units, self.last.duration
            self.deltas.add(np.array([units - 1, 1]), np.array([1, duration - units + 1]))
            self.timed = True
        return self.deltas.close()

    @property
    def all_sync(self) -> bool:
        return self.synced == self.samples

    @property
    def media_duration(self) -> int:
        return self.last.dts + self.last.duration - self.first_dts

    def bitrates(self) -> tuple[int, int, int]:
        """esds buffer size (largest sample), peak bitrate over whole seconds, average."""
        span = self.media_duration / self.timescale
        average = int(self.bytes * 8 / max(span, 1e-9))
        peak = max(self.busiest[2] * 8, average)
        return self.largest, min(peak, b.U32_MAX), min(average, b.U32_MAX)

    def close(self) -> None:
        for column in (self.sizes, self.sync, self.deltas.rows, self.offsets.rows):
            column.close()
