"""Exports in parts: a size limit (`MaxFileSize`) or a range longer than one part may span.

A task is split when it asks for `MaxFileSize` or its range is longer than
`PSIMEXPORT_PART_HOURS` (24 h). The cuts come from the frame indexes (or, splitting by time
alone, from segment starts) through `exports.media.parts`; the engine then exports each part
as a file of its own, one after the other, so memory is what one part needs whatever the
length of the range. Each part is a complete file whose first frame follows the previous
part's last. A part that comes out over the limit (the estimate missed: re-encoded frames at
the start of the range, container overhead) is split again with a budget shrunk by what it
missed, up to `SHRINK_ROUNDS` times; a single GOP over the limit fails the task with the
limit that would work.

The job calls (through exports/options.py) `first_part_path`, `export_in_parts`,
`finish_fields` and `publish`; the parts
live in the task's folder beside the first, which is the task's `output_path` (what PSIM
clients download from `Url`), so deletion, expiry and the orphan sweep treat them as one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings

from exports.media import engine as media
from exports.media.parts import Budget, PartSplitter, SplitError

log = logging.getLogger(__name__)

SHRINK_ROUNDS = 4
TECHNIQUE_ORDER = ("stream_copy", "exact_cut", "transcode")


def wanted(task) -> bool:
    """Whether this task is exported in parts (a mosaic never is)."""
    if task.mosaic:
        return False
    return bool(task.max_file_size) or task.end - task.start > part_span()


def part_span() -> timedelta:
    return timedelta(hours=settings.PSIMEXPORT_PART_HOURS)


def first_part_path(task, out_path: Path) -> Path:
    """Where the first part is written: `out_path` itself for a task in one piece."""
    out_path = Path(out_path)
    return part_path(out_path, 1) if wanted(task) else out_path


def part_path(first: Path, number: int) -> Path:
    """camera-1_…Z_…Z_part01.mp4 beside the first part (`first` named without a part)."""
    stem = first.stem.removesuffix("_part01")
    return first.with_name(f"{stem}_part{number:02d}{first.suffix}")


@dataclass
class PartedResult(media.ExportResult):
    """The engine's result summed over the parts, with one entry per part."""

    parts: list[dict] = field(default_factory=list)
    spans: list[tuple] = field(default_factory=list)  # each part's exact [from, to), for the manifest

    def to_dict(self) -> dict:
        return {**super().to_dict(), "parts": list(self.parts)}


def export_in_parts(task, first_path: Path, reporter) -> PartedResult:
    """Export the task's range part by part into `first_path`'s folder (see the module)."""
    from exports.jobs import with_db_retry

    first_path.parent.mkdir(parents=True, exist_ok=True)
    budget = Budget(task.max_file_size or None, part_span())
    cuts = with_db_retry(plan_cuts, task, task.start, task.end, budget, reporter)
    pending = [(a, b, budget, 0) for a, b in zip([task.start, *cuts], [*cuts, task.end], strict=True)]
    done: list[tuple[Path, object, object, media.ExportResult]] = []
    gaps = []
    clock = _Clock(task, reporter)
    try:
        while pending:
            a, b, part_budget, rounds = pending.pop(0)
            path = first_path.with_name(f".piece-{len(done) + 1}-{rounds}{first_path.suffix}")
            try:
                result = _export_range(task, a, b, path, clock)
            except media.NoRecordingError:
                gaps.append((a, b))  # nothing recorded in this stretch: no file for it
                clock.passed(a, b)
                continue
            size = path.stat().st_size
            if task.max_file_size and size > task.max_file_size:
                path.unlink()
                pending[:0] = _split_again(task, a, b, part_budget, rounds, size, reporter)
                continue
            clock.passed(a, b)
            done.append((path, a, b, result))
        if not done:
            raise media.NoRecordingError("nothing recorded in the range could be read")
        return _published_names(first_path, done, gaps)
    except BaseException:
        for path, *_ in done:
            path.unlink(missing_ok=True)
        raise


def plan_cuts(task, start, end, budget: Budget, reporter) -> list:
    """Cuts of [start, end) under `budget`, from the indexes of the segments one at a time
    (by time alone: from the segments' starts, no index read)."""
    from exports import frame_cache
    from exports.archive import ArchiveError, overlapping_segments, segment_abspath

    splitter = PartSplitter(start, end, budget)
    for segment in overlapping_segments(task.camera, start, end).iterator(chunk_size=500):
        if reporter.cancelled():
            raise media.ExportCancelled("cancelled")
        reporter.progress(0.0)  # alive: a week of indexes takes a while
        if not budget.max_bytes:
            splitter.feed_span(segment.start, segment.end)
            continue
        try:
            path = segment_abspath(task.camera, segment)
            index = frame_cache.index_for(task.camera, path, known={str(path): segment})
        except (ArchiveError, OSError, media.FrameIndexError) as error:
            log.warning("task %s: %s not used to plan parts: %s", task.id, segment.path, error)
            splitter.feed_span(segment.start, segment.end)
            continue
        if index.video is None:
            continue
        splitter.feed(segment.start, index, segment.end)
    return splitter.finish()


def _split_again(task, a, b, budget: Budget, rounds: int, size: int, reporter):
    """The part [a, b) came out `size` bytes: plan it again with a budget shrunk as much."""
    from exports.jobs import with_db_retry

    shrunk = Budget(int(budget.max_bytes * task.max_file_size / size * 0.97), budget.max_span)
    cuts = [] if rounds >= SHRINK_ROUNDS else with_db_retry(plan_cuts, task, a, b, shrunk, reporter)
    if not cuts:
        raise SplitError(
            f"the part from {a:%Y-%m-%d %H:%M:%S} UTC came out at {size} bytes, over the "
            f"MaxFileSize of {task.max_file_size}, and cannot be split further (one GOP, or "
            f"re-encoded frames at the start of the range); ask for a MaxFileSize above {size}"
        )
    log.info("task %s: part from %s was %d bytes; splitting it in %d", task.id, a, size, len(cuts) + 1)
    return [(x, y, shrunk, rounds + 1) for x, y in zip([a, *cuts], [*cuts, b], strict=True)]


def _export_range(task, a, b, path: Path, clock) -> media.ExportResult:
    from exports import frame_cache
    from exports.archive import segment_abspath, segments_covering
    from exports.jobs import with_db_retry

    coverage = with_db_retry(segments_covering, task.camera, a, b)
    if not coverage.segments:
        raise media.NoRecordingError("no segment in this part")
    sources = [
        media.SourceSegment(segment_abspath(task.camera, seg), seg.start, seg.end)
        for seg in coverage.segments
    ]
    return media.export(
        sources, a, b, task.format, path,
        progress=clock.within(a, b),
        cancelled=clock.reporter.cancelled,
        title=f"{task.camera.display_name} {a:%Y-%m-%d %H:%M:%S}Z",
        index_for=frame_cache.indexer(task.camera, coverage.segments),
    )


class _Clock:
    """Progress over the whole range from each part's own fraction."""

    def __init__(self, task, reporter):
        self.start = task.start
        self.total = max((task.end - task.start).total_seconds(), 1e-6)
        self.reporter = reporter
        self.done = 0.0

    def passed(self, a, b) -> None:
        self.done = max(self.done, (b - self.start).total_seconds() / self.total)

    def within(self, a, b):
        low = (a - self.start).total_seconds() / self.total
        share = (b - a).total_seconds() / self.total

        def progress(fraction: float) -> None:
            self.reporter.progress(min(0.99, low + share * min(max(fraction, 0.0), 1.0)))

        return progress


def _published_names(first_path: Path, done, gaps) -> PartedResult:
    """Rename the pieces part01, part02, … and sum their results."""
    from exports.forms import format_psim_time
    from exports.jobs import _sha256 as sha256_of  # the job's own digest of its file

    combined = PartedResult()
    techniques = []
    for number, (piece, a, b, result) in enumerate(done, start=1):
        final = part_path(first_path, number)
        piece.replace(final)
        combined.parts.append(
            {
                "file": final.name,
                "from": format_psim_time(a),
                "to": format_psim_time(b),
                "bytes": final.stat().st_size,
                "sha256": sha256_of(final),
                "frames": result.frames,
                "first_frame": format_psim_time(result.first_frame),
                "last_frame": format_psim_time(result.last_frame),
                "technique": result.technique,
            }
        )
        combined.spans.append((a, b))
        combined.sources += result.sources  # the manifest lists each file once
        combined.frames += result.frames
        combined.duration_s += result.duration_s
        combined.bytes += result.bytes
        combined.gaps += result.gaps
        combined.gap_reasons += result.gap_reasons
        combined.transcoded += [t for t in result.transcoded if t not in combined.transcoded]
        combined.skipped += result.skipped
        combined.reencoded += result.reencoded
        combined.reencoded_frames += result.reencoded_frames
        combined.audio = combined.audio or result.audio
        techniques.append(result.technique)
    holes = sorted([*zip(combined.gaps, combined.gap_reasons, strict=True),
                    *((gap, "nothing recorded in this part") for gap in gaps)])
    combined.gaps, combined.gap_reasons = [g for g, _ in holes], [r for _, r in holes]
    combined.technique = max(techniques, key=TECHNIQUE_ORDER.index)
    combined.streams = _combined_streams([result for *_, result in done])
    combined.first_frame = done[0][3].first_frame
    combined.last_frame = done[-1][3].last_frame
    return combined


def _combined_streams(results) -> dict:
    """The manifest's `streams` over the parts: each stream with the technique of the part
    that re-encoded it most."""
    combined = {}
    for kind in ("video", "audio"):
        written = [result.streams[kind] for result in results if result.streams.get(kind)]
        combined[kind] = max(
            written, key=lambda stream: TECHNIQUE_ORDER.index(stream["technique"]), default=None
        )
    return combined


def finish_fields(result) -> dict:
    """What the task row records of a parted result (nothing for a file in one piece): the
    parts, and `size` as the bytes of all of them (the disk budget counts them all)."""
    if not isinstance(result, PartedResult):
        return {}
    return {"parts": result.parts, "size": sum(part["bytes"] for part in result.parts)}


def publish(result, attempt_folder: Path, task_folder: Path) -> None:
    """Move parts 2… into the task's folder (the job moves the first with the task's file)."""
    if not isinstance(result, PartedResult):
        return
    for part in result.parts[1:]:
        source = attempt_folder / part["file"]
        if source.exists() or not (task_folder / part["file"]).is_file():
            source.replace(task_folder / part["file"])
