"""Find and index the recorded segments of a camera's archive on disk (names -> times).

A segment's start comes from its path: Frigate's `YYYY-MM-DD/HH/<camera>/MM.SS.mp4` (UTC), a
camera's explicit strftime pattern, or a timestamp in the file name (optionally with the date
in the folders); when the name carries no time, the container's `creation_time` tag. Its end
is start + the probed video duration (exports.media.probe). Local-time names are converted
with the camera's zone; see `_resolve_local` for the DST cases.

Indexing is incremental: a file with the same size and mtime as indexed is not probed again.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import DurationField, ExpressionWrapper, F, Max
from django.utils import timezone

from exports.media import probe as media_probe
from exports.models import Camera, Segment

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .ts .mts .m2ts .avi .flv .asf .wmv .3gp".split()
)
# The newest file, modified this recently, may still be growing.
GROWING_SECONDS = 60
MIN_GAP_SECONDS = 0.5
WRITE_BATCH = 500

_DATE_DIR = re.compile(r"\d{4}-\d{2}-\d{2}")
_HOUR_DIR = re.compile(r"\d{2}")
_FRIGATE_NAME = re.compile(r"(\d{2})\.(\d{2})\.mp4")
_DATETIME = re.compile(
    r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})[:._-]?(\d{2})[:._-]?(\d{2})"
    r"(?:[.,](\d{1,6}))?(Z|[+-]\d{2}:?\d{2})?(?!\d)"
)
_EPOCH = re.compile(r"(?<!\d)(\d{10})(?:\.(\d{1,6}))?(?!\d)|(?<!\d)(\d{13})(?!\d)")
_TIME_ONLY = re.compile(r"(?<!\d)(\d{2})[:._-]?(\d{2})[:._-]?(\d{2})(?!\d)")
_FOLDER_DATE = re.compile(r"(?<!\d)(\d{4})[-/_]?(\d{2})[-/_]?(\d{2})(?!\d)")
_EPOCH_RANGE = (946684800, 4102444800)  # 2000-01-01 .. 2100-01-01


class ArchiveError(Exception):
    """The camera's archive cannot be read (missing folder, bad pattern or zone)."""


@dataclass
class IndexSummary:
    camera_id: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)
    segments: int = 0
    first: datetime | None = None
    last: datetime | None = None
    gaps: int = 0
    seconds: float = 0.0
    pending: int = 0  # plain MP4s still being written (no index yet): picked up when complete

    def __str__(self):
        span = (
            f"{self.first:%Y-%m-%d %H:%M:%S} – {self.last:%Y-%m-%d %H:%M:%S} UTC"
            if self.first and self.last
            else "no recordings"
        )
        text = (
            f"camera {self.camera_id}: {_plural(self.segments, 'segment')}, {span}, "
            f"{_plural(self.gaps, 'gap')} "
            f"({self.added} new, {self.updated} changed, {self.removed} removed, "
            f"{self.unchanged} unchanged"
        )
        if self.pending:
            text += f", {self.pending} still being written"
        if self.failed:
            text += f", {len(self.failed)} unreadable"
        return text + f") in {self.seconds:.2f} s"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass
class Coverage:
    segments: list[Segment]
    gaps: list[tuple[datetime, datetime]]
    recorded_seconds: float


# -- names -> times ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameTime:
    """A time read from a path: absolute (`aware`) or local wall time in the camera's zone."""

    aware: datetime | None = None
    local: datetime | None = None


def parse_frigate(parts: tuple[str, ...], source_name: str) -> NameTime | None:
    if len(parts) != 4 or parts[2] != source_name:
        return None
    date, hour, _, name = parts
    match = _FRIGATE_NAME.fullmatch(name)
    if not (_DATE_DIR.fullmatch(date) and _HOUR_DIR.fullmatch(hour) and match):
        return None
    try:  # not strptime: this runs for every file of a large archive
        moment = datetime(
            int(date[:4]), int(date[5:7]), int(date[8:]), int(hour), int(match[1]), int(match[2]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return NameTime(aware=moment)


def parse_pattern(relative: str, pattern: str) -> NameTime | None:
    try:
        moment = datetime.strptime(relative, pattern)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return NameTime(aware=moment.astimezone(UTC))
    return NameTime(local=moment)


def parse_name(parts: tuple[str, ...]) -> NameTime | None:
    """A timestamp in the file name, or a time of day in it plus a date in the folders."""
    stem = Path(parts[-1]).stem
    for match in _DATETIME.finditer(stem):
        found = _datetime_from_match(match)
        if found is not None:
            return found
    for match in _EPOCH.finditer(stem):
        if match[3]:
            seconds = int(match[3]) / 1000
        else:
            seconds = int(match[1]) + float(f"0.{match[2]}" if match[2] else 0)
        if _EPOCH_RANGE[0] <= seconds < _EPOCH_RANGE[1]:
            return NameTime(aware=datetime.fromtimestamp(seconds, UTC))
    time_of_day = _TIME_ONLY.search(stem)
    date = _FOLDER_DATE.search("/".join(parts[:-1]))
    if time_of_day and date:
        try:
            moment = datetime(*(int(x) for x in date.groups() + time_of_day.groups()))
        except ValueError:
            return None
        return NameTime(local=moment)
    return None


def _datetime_from_match(match: re.Match) -> NameTime | None:
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    if offset is None:
        return NameTime(local=moment)
    if offset == "Z":
        return NameTime(aware=moment.replace(tzinfo=UTC))
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return NameTime(aware=(moment - sign * delta).replace(tzinfo=UTC))


def name_time(camera: Camera, relative: str) -> NameTime | None:
    """The time a path names for this camera, or None if it names none (or not this camera)."""
    parts = tuple(relative.split("/"))
    if camera.layout == Camera.Layout.PATTERN:
        return parse_pattern(relative, camera.pattern)
    if camera.layout == Camera.Layout.FRIGATE:
        return parse_frigate(parts, camera.source_name or camera.camera_id)
    if _is_frigate_shaped(parts):
        return parse_frigate(parts, camera.source_name or camera.camera_id)
    return parse_name(parts)


def _named_by_layout(camera: Camera, relative: str) -> bool:
    """Cheaply: does the camera's explicit layout name this path? (Walker already chose folders.)"""
    if camera.layout == Camera.Layout.FRIGATE:
        parts = tuple(relative.split("/"))
        return _is_frigate_shaped(parts) and parts[2] == (camera.source_name or camera.camera_id)
    return name_time(camera, relative) is not None


def _is_frigate_shaped(parts: tuple[str, ...]) -> bool:
    return (
        len(parts) == 4
        and _DATE_DIR.fullmatch(parts[0]) is not None
        and _HOUR_DIR.fullmatch(parts[1]) is not None
        and _FRIGATE_NAME.fullmatch(parts[3]) is not None
    )


def validate_pattern(pattern: str) -> None:
    """Raise ArchiveError unless the pattern names year, month, day, hour and minute."""
    missing = [d for d in ("%Y", "%m", "%d", "%H", "%M") if d not in pattern]
    if missing or pattern.startswith("/") or ".." in pattern.split("/"):
        raise ArchiveError(
            f"pattern {pattern!r} must be a relative path with %Y %m %d %H %M (missing {missing})"
        )
    sample = datetime(2026, 11, 20, 10, 9, 8 if "%S" in pattern else 0)
    zone = UTC if "%z" in pattern else None
    try:
        round_trip = datetime.strptime(sample.replace(tzinfo=zone).strftime(pattern), pattern)
    except ValueError as error:
        raise ArchiveError(f"pattern {pattern!r} cannot be read back: {error}") from None
    if round_trip.replace(tzinfo=None) != sample:
        raise ArchiveError(f"pattern {pattern!r} does not read back the time it writes")


def camera_zone(camera: Camera) -> ZoneInfo:
    try:
        return ZoneInfo(camera.timezone or "UTC")
    except (KeyError, ValueError) as error:
        raise ArchiveError(f"unknown time zone {camera.timezone!r}") from error


# -- walking the archive ---------------------------------------------------------------------------


@dataclass
class FoundFile:
    path: str  # relative, "/"-separated
    size: int
    mtime: float


def archive_root(camera: Camera) -> Path:
    root = Path(camera.archive_path).expanduser()
    if not root.is_dir():
        raise ArchiveError(f"archive path {camera.archive_path!r} is not a readable directory")
    return root.resolve()


def walk_archive(camera: Camera, root: Path, after: tuple[str, ...] | None = None) -> Iterator[FoundFile]:
    """Video files under root, never leaving it.

    Symlinks leading outside the archive are not followed; a symlinked folder inside it is
    visited once; a symlinked file is skipped (inside, it duplicates the real file).

    With `after` (the parts of the newest indexed path) only paths that sort at or after it
    are visited: recorders name folders and files so that this order is time order.
    """
    source = camera.source_name or camera.camera_id
    seen_dirs = {str(root)}
    stack: list[tuple[str, tuple[str, ...], tuple[str, ...] | None]] = [(str(root), (), after)]
    while stack:
        directory, parts, bound = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            logger.warning("cannot list %s: %s", directory, error)
            continue
        depth = len(parts)
        wanted = _wanted_dirs(camera, parts, entries, source)
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            limit = bound[depth] if bound is not None and depth < len(bound) else None
            if limit is not None and name < limit:
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if entry.is_symlink():
                if not _inside(root, entry.path):
                    logger.warning("skipping %s: symlink leads outside the archive", entry.path)
                    continue
                if not is_dir:
                    continue  # a link to a file of the archive (e.g. "latest.mp4"): a duplicate
            if is_dir:
                if wanted is not None and name not in wanted:
                    continue
                real = os.path.realpath(entry.path)
                if real in seen_dirs:
                    continue
                seen_dirs.add(real)
                child_bound = bound if limit is not None and name == limit else None
                stack.append((entry.path, parts + (name,), child_bound))
            elif os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES:
                relative = "/".join(parts + (name,))
                if not _storable(relative):
                    logger.warning("skipping %s: name not UTF-8 or too long", entry.path)
                    continue
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                yield FoundFile(relative, stat.st_size, stat.st_mtime)


def _wanted_dirs(camera, parts, entries, source) -> set[str] | None:
    """Which sub-folders to enter; None = all. Frigate hour folders hold every camera."""
    if camera.layout == Camera.Layout.PATTERN:
        return None
    if camera.layout == Camera.Layout.FRIGATE:
        if len(parts) == 0:
            return {e.name for e in entries if _DATE_DIR.fullmatch(e.name)}
        if len(parts) == 1:
            return {e.name for e in entries if _HOUR_DIR.fullmatch(e.name)}
        return {source} if len(parts) == 2 else set()
    frigate_hour = (
        len(parts) == 2 and _DATE_DIR.fullmatch(parts[0]) and _HOUR_DIR.fullmatch(parts[1])
    )
    # An hour folder of a Frigate-shaped tree holds every camera's folder: enter only ours.
    return {source} if frigate_hour else None


def _storable(relative: str) -> bool:
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as surrogates
        return False
    return len(relative) <= Segment._meta.get_field("path").max_length


def _inside(root: Path, path: str) -> bool:
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def segment_abspath(camera: Camera, segment: Segment) -> Path:
    """The segment's file, resolved; raises ArchiveError if it would lie outside the archive."""
    if segment.camera_id != camera.pk:
        raise ArchiveError(f"segment {segment.pk} does not belong to camera {camera.camera_id}")
    root = Path(camera.archive_path).resolve()
    path = (root / segment.path).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ArchiveError(f"segment path {segment.path!r} leads outside the archive")
    return path


# -- indexing --------------------------------------------------------------------------------------


@dataclass
class _Probed:
    found: FoundFile
    named: NameTime | None
    info: media_probe.ProbeResult
    start: datetime | None = None
    ambiguous: tuple[datetime, datetime] | None = None  # (first pass, second pass) UTC


def index_camera(camera: Camera, *, recent_only: bool = False) -> IndexSummary:
    """Bring the camera's segment index in line with its archive folder.

    recent_only: look only at the newest files (the newest indexed segment and whatever sorts
    after it: later names in its folder, later folders), so a segment written seconds ago
    becomes exportable cheaply. It neither drops deleted files nor finds late arrivals with
    earlier names: the periodic full scan does.
    """
    began = time.monotonic()
    # The index is as current as the moment its scan began (files that appear during the
    # walk may be missed): that is when it says it was indexed.
    scanned_at = timezone.now()
    summary = IndexSummary(camera_id=camera.camera_id)
    zone = camera_zone(camera)
    if camera.layout == Camera.Layout.PATTERN:
        validate_pattern(camera.pattern)
    root = archive_root(camera)

    segments = Segment.objects.filter(camera=camera)
    newest = segments.order_by("-start").only("path", "start").first() if recent_only else None
    after = tuple(newest.path.split("/")) if newest else None
    found = list(walk_archive(camera, root, after))
    if camera.layout != Camera.Layout.AUTO:
        # Files the layout does not name are not this camera's (and drop out if indexed).
        found = [item for item in found if _named_by_layout(camera, item.path)]
    known = _known_rows(segments, [f.path for f in found] if recent_only else None)

    changed = []
    for item in found:
        row = known.get(item.path)
        if row is not None and row[1] == item.size and row[2] == item.mtime:
            summary.unchanged += 1
        else:
            changed.append(item)
    probed, failed_known = _probe_all(camera, changed, summary)
    _assign_starts(camera, zone, probed, summary)

    removed_paths = set()
    if not recent_only:
        present = {item.path for item in found}
        removed_paths = {path for path in known if path not in present}
    removed_paths |= {path for path in failed_known if path in known}

    new_rows = [_segment_row(camera, p) for p in probed if p.start is not None]
    summary.added = sum(1 for row in new_rows if row.path not in known)
    summary.updated = len(new_rows) - summary.added
    summary.removed = len(removed_paths)
    with transaction.atomic():
        _write(camera, new_rows, [known[p][3] for p in removed_paths])
        since = newest.start - timedelta(hours=1) if newest else None
        _refresh_camera(
            camera, new_rows, bool(removed_paths), full=not recent_only, since=since,
            scanned_at=scanned_at,
        )

    summary.segments = camera.segments.count()
    summary.first, summary.last = camera.first_recording, camera.last_recording
    summary.gaps = camera.gap_count
    summary.seconds = time.monotonic() - began
    return summary


def _known_rows(segments, paths: list[str] | None) -> dict[str, tuple]:
    """path -> (path, size, mtime, id) of indexed segments (all, or those at `paths`)."""
    columns = ("path", "size", "mtime", "id")
    if paths is None:
        return {row[0]: row for row in segments.values_list(*columns).iterator(chunk_size=5000)}
    known = {}
    for index in range(0, len(paths), WRITE_BATCH):
        batch = segments.filter(path__in=paths[index : index + WRITE_BATCH])
        known.update((row[0], row) for row in batch.values_list(*columns))
    return known


# (camera pk, archive, path) -> ((size, mtime), pending?) of files that could not be indexed, so the
# periodic scan neither probes nor logs them again until they change.
_unreadable: dict[tuple[int, str, str], tuple[tuple[int, float], bool]] = {}
_UNREADABLE_LIMIT = 100_000


def _probe_all(camera, files, summary) -> tuple[list[_Probed], list[str]]:
    probed, failed = [], []
    for item in files:
        named = name_time(camera, item.path)
        key, stamp = (camera.pk, camera.archive_path, item.path), (item.size, item.mtime)
        remembered = _unreadable.get(key)
        if remembered is not None and remembered[0] == stamp:
            pending = remembered[1]
        else:
            try:
                info = media_probe.probe(Path(camera.archive_path) / item.path)
            except media_probe.ProbeError as error:
                pending = isinstance(error, media_probe.IncompleteFile)
                if not pending:
                    logger.warning("camera %s: skipping %s: %s", camera.camera_id, item.path, error)
                if len(_unreadable) >= _UNREADABLE_LIMIT:
                    _unreadable.clear()
                _unreadable[key] = (stamp, pending)
            else:
                _unreadable.pop(key, None)
                probed.append(_Probed(item, named, info))
                continue
        if pending:
            summary.pending += 1
        else:
            summary.failed.append(item.path)
        failed.append(item.path)
    return probed, failed


def _assign_starts(camera, zone, probed: list[_Probed], summary) -> None:
    for item in probed:
        named, created = item.named, item.info.creation_time
        if named is not None and named.aware is not None:
            item.start = named.aware
        elif named is not None and named.local is not None:
            item.start, item.ambiguous = _resolve_local(named.local, zone, created)
        elif created is not None:
            item.start = created
        else:
            logger.warning(
                "camera %s: %s has no time in its name and no creation_time",
                camera.camera_id, item.found.path,
            )
            summary.failed.append(item.found.path)
    _resolve_repeated_hour(camera, zone, [p for p in probed if p.ambiguous])


def _resolve_local(local: datetime, zone: ZoneInfo, created: datetime | None):
    """UTC for a wall time in `zone`: (start, None) or, undecided, (None, (first, second)).

    A repeated (fall-back) wall time has two candidates: creation_time picks the nearer one;
    without it the choice is left to `_resolve_repeated_hour`. A skipped (spring-forward) wall
    time is read with the offset in force before the change — a recorder whose clock had not
    moved yet — unless creation_time is nearer the other reading.
    """
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first, None
    exists = first.astimezone(zone).replace(tzinfo=None) == local
    if created is not None:
        return min((first, second), key=lambda c: abs(c - created)), None
    if not exists:
        return first, None
    return None, (first, second)


def _resolve_repeated_hour(camera, zone, undecided: list[_Probed]) -> None:
    """Place files named in a repeated hour: a file belongs to the second pass when a file
    written before it (by mtime, then path) has the same or a later wall time in that hour."""
    if not undecided:
        return
    low = min(p.ambiguous[0] for p in undecided) - timedelta(hours=1)
    high = max(p.ambiguous[1] for p in undecided) + timedelta(hours=1)
    fresh = {p.found.path for p in undecided}
    written = [
        ((mtime, path), start.astimezone(zone).replace(tzinfo=None))
        for path, mtime, start in Segment.objects.filter(
            camera=camera, start__gte=low, start__lt=high
        ).values_list("path", "mtime", "start")
        if path not in fresh
    ]
    for p in undecided:
        local = p.ambiguous[0].astimezone(zone).replace(tzinfo=None)
        written.append(((p.found.mtime, p.found.path), local))
    for p in undecided:
        key = (p.found.mtime, p.found.path)
        local = p.ambiguous[0].astimezone(zone).replace(tzinfo=None)
        wrapped = any(
            other_key < key and other_local >= local and other_local.date() == local.date()
            for other_key, other_local in written
        )
        p.start = p.ambiguous[1] if wrapped else p.ambiguous[0]


def _segment_row(camera, probed: _Probed) -> Segment:
    info = probed.info
    return Segment(
        camera=camera,
        path=probed.found.path,
        start=probed.start,
        end=probed.start + timedelta(seconds=info.duration),
        size=probed.found.size,
        mtime=probed.found.mtime,
        video_codec=info.video_codec,
        width=info.width,
        height=info.height,
        frame_rate=info.frame_rate,
        audio_codec=info.audio_codec,
        complete=True,
    )


def _write(camera, rows: list[Segment], removed_ids: list[int]) -> None:
    for index in range(0, len(removed_ids), WRITE_BATCH):
        Segment.objects.filter(id__in=removed_ids[index : index + WRITE_BATCH]).delete()
    if rows:
        Segment.objects.bulk_create(
            rows,
            batch_size=WRITE_BATCH,
            update_conflicts=True,
            unique_fields=["camera", "path"],
            update_fields=[
                "start", "end", "size", "mtime", "video_codec", "width", "height",
                "frame_rate", "audio_codec", "complete",
            ],
        )


def _refresh_camera(
    camera, new_rows, removed: bool, *, full: bool, since=None, scanned_at=None
) -> None:
    """Keep the growing flag, the longest-segment bound and the coverage figures current.

    Only the newest file may be growing. A refresh (not `full`) clears the flag only on the
    segments from `since` on, so it stays a short range scan; full scans clear it everywhere.
    """
    segments = Segment.objects.filter(camera=camera)
    newest = segments.order_by("-start").only("id", "mtime", "complete").first()
    if newest is not None:
        stale = segments.filter(complete=False).exclude(id=newest.id)
        if not full and since is not None:
            stale = stale.filter(start__gte=since)
        stale.update(complete=True)
        growing = time.time() - newest.mtime < GROWING_SECONDS
        if newest.complete == growing:
            segments.filter(id=newest.id).update(complete=not growing)

    fields = ["indexed_at"]
    camera.indexed_at = scanned_at or timezone.now()
    longest = max((row.duration.total_seconds() for row in new_rows), default=0.0)
    if removed and full:
        longest_row = segments.aggregate(
            longest=Max(ExpressionWrapper(F("end") - F("start"), output_field=DurationField()))
        )["longest"]
        camera.max_segment_seconds = longest_row.total_seconds() if longest_row else 0.0
        fields.append("max_segment_seconds")
    elif longest > camera.max_segment_seconds:
        camera.max_segment_seconds = longest
        fields.append("max_segment_seconds")

    if new_rows or removed or camera.first_recording is None:
        if full:
            _store_coverage(camera, segments)
            fields += ["first_recording", "last_recording", "recorded_seconds", "gap_count"]
        else:
            camera.first_recording = segments.order_by("start").values_list("start", flat=True).first()
            camera.last_recording = last_recorded_frame(camera)
            fields += ["first_recording", "last_recording"]
    Camera.objects.filter(pk=camera.pk).update(**{name: getattr(camera, name) for name in fields})


def _store_coverage(camera, segments) -> None:
    rows = segments.order_by("start").values_list("start", "end", "frame_rate")
    spans = list(_merge(rows.iterator(chunk_size=5000)))
    camera.first_recording = spans[0][0] if spans else None
    camera.last_recording = spans[-1][1] if spans else None
    camera.recorded_seconds = sum((b - a).total_seconds() for a, b in spans)
    camera.gap_count = max(0, len(spans) - 1)


def index_all_cameras() -> list[IndexSummary]:
    """Re-index every enabled camera; one camera's failure is logged, not raised."""
    summaries = []
    for camera in Camera.objects.filter(enabled=True):
        try:
            summaries.append(index_camera(camera))
        except ArchiveError as error:
            logger.error("camera %s: %s", camera.camera_id, error)
            summaries.append(IndexSummary(camera_id=camera.camera_id, failed=[str(error)]))
        except Exception as error:  # the other cameras still get indexed
            logger.exception("camera %s: indexing failed", camera.camera_id)
            summaries.append(IndexSummary(camera_id=camera.camera_id, failed=[repr(error)]))
    return summaries


# -- queries ---------------------------------------------------------------------------------------


def gap_threshold(frame_rate: float) -> float:
    """A hole longer than this (seconds) is a gap: two frame intervals, at least 0.5 s."""
    return max(2 / frame_rate if frame_rate else 0.0, MIN_GAP_SECONDS)


def _merge(rows) -> Iterator[tuple[datetime, datetime]]:
    """Merge (start, end, frame_rate) rows ordered by start into recorded spans."""
    span_start = span_end = None
    rate = 0.0
    for start, end, frame_rate in rows:
        if span_end is not None and (start - span_end).total_seconds() > gap_threshold(rate):
            yield span_start, span_end
            span_start = span_end = None
        if span_start is None:
            span_start, span_end = start, end
        elif end > span_end:
            span_end = end
        rate = frame_rate or rate
    if span_start is not None:
        yield span_start, span_end


def _overlapping(camera: Camera, start: datetime, end: datetime):
    """Segments overlapping [start, end): one range scan on (camera, start)."""
    # Read the bound fresh: another process may have indexed a longer segment since the
    # caller loaded this camera.
    longest = Camera.objects.filter(pk=camera.pk).values_list("max_segment_seconds", flat=True)
    camera.max_segment_seconds = longest.first() or 0.0
    earliest = start - timedelta(seconds=camera.max_segment_seconds + 0.001)
    return Segment.objects.filter(camera=camera, start__gte=earliest, start__lt=end, end__gt=start)


def overlapping_segments(camera: Camera, start: datetime, end: datetime):
    """The segments overlapping [start, end) in order of start, as a queryset: iterate it
    with `.iterator()` to walk a week of segments without holding them all."""
    return _overlapping(camera, start, end).order_by("start")


def segments_covering(camera: Camera, start: datetime, end: datetime) -> Coverage:
    """The ordered segments overlapping [start, end) and the gaps between them in that range."""
    segments = list(_overlapping(camera, start, end).order_by("start"))
    gaps = []
    cursor, rate = start, segments[0].frame_rate if segments else 0.0
    for segment in segments:
        if (segment.start - cursor).total_seconds() > gap_threshold(rate):
            gaps.append((cursor, segment.start))
        cursor = max(cursor, segment.end)
        rate = segment.frame_rate or rate
    if (end - cursor).total_seconds() > gap_threshold(rate):
        gaps.append((cursor, end))
    recorded = sum((b - a).total_seconds() for a, b in recorded_intervals(camera, start, end, segments))
    return Coverage(segments=segments, gaps=gaps, recorded_seconds=recorded)


def recorded_intervals(
    camera: Camera, start: datetime, end: datetime, segments: list[Segment] | None = None
) -> list[tuple[datetime, datetime]]:
    """Merged recorded spans clipped to [start, end)."""
    if segments is not None:
        rows = [(s.start, s.end, s.frame_rate) for s in segments]
    else:
        rows = _overlapping(camera, start, end).order_by("start").values_list(
            "start", "end", "frame_rate"
        )
    return [(max(a, start), min(b, end)) for a, b in _merge(rows) if min(b, end) > max(a, start)]


def camera_coverage(camera: Camera) -> dict:
    """First and last recording, recorded hours and gap count, as of the last index."""
    return {
        "first": camera.first_recording,
        "last": camera.last_recording,
        "recorded_hours": camera.recorded_seconds / 3600,
        "gap_count": camera.gap_count,
    }


def last_recorded_frame(camera: Camera) -> datetime | None:
    """When the camera's last recorded frame ends (None without recordings)."""
    segments = Segment.objects.filter(camera=camera)
    newest = segments.order_by("-start").values_list("start", flat=True).first()
    if newest is None:
        return None
    longest = Camera.objects.filter(pk=camera.pk).values_list("max_segment_seconds", flat=True)
    earliest = newest - timedelta(seconds=(longest.first() or 0.0) + 0.001)
    return segments.filter(start__gte=earliest).aggregate(last=Max("end"))["last"]
