"""Frame-exact export of recorded segments into one file: the public face of the engine.

How it works, module by module: `frameindex` lists every packet of each segment (timestamps,
bytes, kind of frame) without decoding; `plan` decides from those indexes alone which frames
are wanted, which are stream-copied, which are decoded (from which earlier access point) and
re-encoded, and every output timestamp; `executor` follows the plan through PyAV and checks
that it wrote exactly what was planned. The re-encoded spans of the first and last segments
are encoded in a thread while the others are indexed and planned (`ahead`). A GOP inside the range is copied; frames before the
first copyable access point (and, with reordered frames, after the last) are re-encoded with
settings matching the source ("smart cut"): libx264 with in-band parameter sets under a
distinct SPS/PPS id, or libx265 after which the copied stream's parameter sets are sent again.
Pairs compat.py does not copy are transcoded to H.264/AAC (that stream only). Segments play
back to back; gaps are listed, not filled; segments overlapping in wall time show each instant
once. mp4/mov stream copies and exact cuts of MP4/MOV sources go through the direct writer
(`mp4out`, `mp4writer`: copied samples move as byte ranges, never read); everything else
through PyAV's muxers. Edit lists: the direct writer gives every track one `elst` entry
(video from the B-frame delay, so presentation starts at zero); FFmpeg's mov muxer writes one
for a B-frame delay; the other containers have none.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import compat, mp4out
from .ahead import spans_ahead
from .errors import ExportCancelled, ExportError, NoRecordingError
from .executor import Progress, execute
from .frameindex import FrameIndexError, SegmentIndex, build_index
from .plan import Plan, PlanSegment, SegmentSummary, make_plan, outline_plan

FORMATS = compat.FORMATS
# Up to this many indexed packets (about an hour of 25 fps video with 48 kHz AAC: some 12 MB of
# indexes and plan) everything is held in memory; beyond, indexes go to a temporary file and
# only an outline of the plan is kept (see _IndexShelf and plan.outline_plan).
HOLD_PACKETS = 300_000

__all__ = [
    "FORMATS",
    "ExportCancelled",
    "ExportError",
    "ExportResult",
    "NoRecordingError",
    "SourceSegment",
    "export",
]


@dataclass(frozen=True)
class SourceSegment:
    """One recorded file and the wall times its index gives for it."""

    path: Path  # absolute path of a recorded file
    start: datetime  # aware UTC wall time of its first video frame
    end: datetime  # aware UTC end of its last video frame


@dataclass
class ExportResult:
    """What an export wrote, for the task record and the user."""

    frames: int = 0
    duration_s: float = 0.0
    bytes: int = 0
    technique: str = "stream_copy"  # stream_copy | exact_cut | transcode
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    first_frame: datetime | None = None
    last_frame: datetime | None = None
    transcoded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    audio: bool = False
    reencoded_frames: int = 0  # frames re-encoded by a smart cut (0 for a pure copy)
    gap_reasons: list[str] = field(default_factory=list)  # one per gap, same order
    reencoded: list[str] = field(default_factory=list)  # each re-encoded span and why
    # Files that gave frames: (path, size, mtime) as their frame index read them.
    sources: list[tuple[Path, int, float]] = field(default_factory=list)
    # How each stream was written: {"video": {"codec", "technique"}, "audio": ... or None}.
    streams: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-able summary."""

        def iso(value):
            return value.astimezone(UTC).isoformat() if value else None

        return {
            "frames": self.frames,
            "duration_s": round(self.duration_s, 6),
            "bytes": self.bytes,
            "technique": self.technique,
            "gaps": [[iso(a), iso(b)] for a, b in self.gaps],
            "first_frame": iso(self.first_frame),
            "last_frame": iso(self.last_frame),
            "transcoded": list(self.transcoded),
            "skipped": list(self.skipped),
            "audio": self.audio,
            "reencoded_frames": self.reencoded_frames,
            "reencoded": list(self.reencoded),
            "gap_reasons": list(self.gap_reasons),
        }


def export(
    segments: list[SourceSegment],
    start: datetime,
    end: datetime,
    fmt: str,
    out_path: Path,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    title: str | None = None,
    *,
    index_for: Callable[[Path], SegmentIndex] | None = None,
) -> ExportResult:
    """Write the frames recorded in [start, end) from `segments` into `out_path` as `fmt`.

    The file is written under a temporary name beside `out_path` and renamed into place only
    when complete; on any error or cancellation the temporary file is removed and the error
    raised. `progress(fraction)` is called at least once a second and never goes backwards;
    `cancelled()` is polled so that a cancel stops the work within a second. `index_for(path)`
    supplies a segment's frame index (a cache); by default it is built by demuxing the file.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ExportError("start and end must be timezone-aware")
    if end <= start:
        raise ExportError("the end of the range must be after its start")
    out_path = Path(out_path)
    chosen = sorted((s for s in segments if s.end > start and s.start < end), key=lambda s: s.start)
    if not chosen:
        raise NoRecordingError(f"nothing is recorded between {start} and {end}")
    ticker = Progress(progress, cancelled)
    ticker.tick(0.0)
    # The first and last files are indexed first, for their re-encoded spans to be encoded
    # in a thread meanwhile (ahead.py); _ends_kept keeps those two so each file is read once.
    index_for = _ends_kept(index_for or build_index, chosen)
    ahead = spans_ahead(chosen, start, end, fmt, index_for)
    try:
        with _IndexShelf(out_path.parent) as shelf:
            skipped, read = [], {}
            for segment in _each_index(chosen, index_for, ticker, skipped):
                read[segment.path] = (segment.index.size, segment.index.mtime)
                shelf.add(segment)
            if not shelf.summaries:
                raise NoRecordingError(
                    "no readable recording in the requested range" + (f" ({'; '.join(skipped)})")
                )
            if shelf.file is None:
                plan = make_plan(shelf.held, start, end, fmt)
            else:
                plan = outline_plan(shelf.summaries, shelf, start, end, fmt)
            _write(plan, shelf, start, end, out_path, ticker, title, chosen[0].start, ahead)
    finally:
        ahead.close()
    result = _result(plan, skipped)
    result.bytes = out_path.stat().st_size
    result.sources = [(o.path, *read[o.path]) for o in plan.outlines]
    if progress is not None:
        progress(1.0)
    return result


def _write(plan, shelf, start, end, out_path, ticker, title, first_start, ahead=None) -> None:
    """Execute `plan` into a hidden file beside `out_path`, renamed into place when complete."""
    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    title = title or (
        f"recording from {start.astimezone(UTC):%Y-%m-%d %H:%M:%S} "
        f"to {end.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    creation = max(first_start, start)
    try:
        if mp4out.usable(plan, shelf):
            mp4out.execute_mp4(plan, shelf, tmp_path, ticker, title, creation, ahead)
        else:
            execute(plan, shelf, tmp_path, ticker, title, creation, ahead)
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _each_index(chosen: list[SourceSegment], index_for, ticker: Progress, skipped: list[str]):
    """Each readable segment with its frame index; unreadable ones go to `skipped`, not fatal."""
    for segment in chosen:
        ticker.check_cancel()
        try:
            index = index_for(segment.path)
        except (FrameIndexError, OSError) as error:
            skipped.append(f"{segment.path.name}: unreadable ({error})")
            continue
        if index.video is None and index.damaged:
            skipped.append(f"{segment.path.name}: {index.damaged}")
            continue
        yield PlanSegment(segment.path, segment.start, index)


def _indexed(chosen: list[SourceSegment], index_for, ticker: Progress):
    """(every segment with its index, skipped): for paths that plan in memory (options.py)."""
    skipped: list[str] = []
    return list(_each_index(chosen, index_for, ticker, skipped)), skipped


def _ends_kept(index_for, chosen: list[SourceSegment]):
    """`index_for` that keeps the indexes of the first and last file (asked for twice: by
    ahead.py and by the plan), and no other: a day's indexes must not stay in memory."""
    ends, kept, lock = {chosen[0].path, chosen[-1].path}, {}, threading.Lock()

    def indexed(path):
        if path not in ends:
            return index_for(path)
        with lock:
            if path not in kept:
                kept[path] = index_for(path)
            return kept[path]

    return indexed


class _IndexShelf:
    """The export's frame indexes: held while they are few (HOLD_PACKETS), else pickled into an
    unnamed temporary file beside the output and loaded again one at a time (`shelf[k]`), so a
    day of 10 s segments does not hold a day of indexes (some 45 bytes a packet) in memory.
    Their summaries stay in memory."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.held: list[PlanSegment] = []  # while file is None
        self.packets = 0
        self.file = None
        self.places: list[tuple[int, int]] = []
        self.summaries: list[SegmentSummary] = []
        self.loaded: tuple[int, PlanSegment] | None = None

    def add(self, segment: PlanSegment) -> None:
        self.summaries.append(SegmentSummary.of(segment))
        self.packets += sum(len(stream) for stream in segment.index.streams())
        if self.file is None and self.packets <= HOLD_PACKETS:
            self.held.append(segment)
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=self.folder)  # noqa: SIM115 - see __exit__
            for held in self.held:
                self._put(held)
            self.held = []
        self._put(segment)

    def _put(self, segment: PlanSegment) -> None:
        data = pickle.dumps(segment, protocol=pickle.HIGHEST_PROTOCOL)
        self.places.append((self.file.seek(0, os.SEEK_END), len(data)))
        self.file.write(data)

    def __getitem__(self, number: int) -> PlanSegment:
        if self.file is None:
            return self.held[number]
        if self.loaded is None or self.loaded[0] != number:
            self.loaded = None  # let the last one go before the next is read
            offset, length = self.places[number]
            self.file.seek(offset)
            self.loaded = (number, pickle.loads(self.file.read(length)))  # noqa: S301 - ours
        return self.loaded[1]

    def __len__(self) -> int:
        return len(self.summaries)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.held, self.loaded = [], None
        if self.file is not None:
            self.file.close()


def _result(plan: Plan, unreadable: list[str]) -> ExportResult:
    return ExportResult(
        frames=plan.frames,
        duration_s=float(plan.seconds(plan.duration)),
        technique=plan.technique,
        gaps=[(gap.start, gap.end) for gap in plan.gaps],
        gap_reasons=[gap.reason for gap in plan.gaps],
        first_frame=plan.first_frame,
        last_frame=plan.last_frame,
        transcoded=list(plan.transcoded),
        skipped=unreadable + plan.skipped,
        audio=plan.audio_mode is not None,
        streams={
            "video": {"codec": plan.video_codec, "technique": plan.technique},
            "audio": {"codec": plan.audio_codec, "technique": "stream_copy"
                      if plan.audio_mode == "copy" else "transcode"} if plan.audio_mode else None,
        },
        reencoded_frames=plan.reencoded_frames,
        reencoded=[
            f"{outline.path.name}: {frames} frames ({reason})"
            for outline in plan.outlines
            for frames, reason in outline.reencoded
            if plan.video_mode == "copy"
        ],
    )
