"""Frame indexes of recorded segments, cached in the database beside the archive index.

A second export of the same footage takes each segment's index from its `SegmentFrameIndex`
row instead of demuxing the file again. A row is valid while the file keeps the size and mtime
it had when indexed; a file that grew (a recorder still writing) gets its index extended from
the stored one, anything else is indexed afresh.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from exports.archive import ArchiveError, segment_abspath
from exports.media.frameindex import SegmentIndex, build_index
from exports.models import Camera, Segment, SegmentFrameIndex

# What the cache did in this process: "hit", "built", "extended", "uncached" (file outside
# the archive index). For figures and tests; never reset by the program.
counts: Counter[str] = Counter()
log = logging.getLogger(__name__)


def indexer(camera: Camera, segments: Iterable[Segment] = ()) -> Callable[[Path], SegmentIndex]:
    """The engine's `index_for=` for one camera's files; `segments`, the rows being exported,
    spare a query per file to find each one's row."""
    known = {}
    for segment in segments:
        try:
            known[str(segment_abspath(camera, segment))] = segment
        except ArchiveError:
            continue  # the engine reports such a file itself
    return partial(index_for, camera, known=known)


def index_for(camera: Camera, path: Path, *, known: dict | None = None) -> SegmentIndex:
    """The frame index of `path`, a file of `camera`'s archive: cached, extended or built.

    The cache only saves time: while the database is unreachable the file is indexed afresh
    and the export goes on (the job itself retries its own database steps).
    """
    path = Path(path)
    try:
        segment, row = _lookup(camera, path, known or {})
    except (OperationalError, InterfaceError) as error:
        return _uncached(path, error)
    if segment is None:
        counts["uncached"] += 1
        return build_index(path)
    stat = os.stat(path)
    stored = _stored(row, path)
    if stored is not None and (row.size, row.mtime) == (stat.st_size, stat.st_mtime):
        counts["hit"] += 1
        return stored
    grown = stored is not None and row.size < stat.st_size
    index = build_index(path, stored if grown else None)
    counts["extended" if grown else "built"] += 1
    try:
        _store(segment, index)
    except (OperationalError, InterfaceError) as error:
        log.warning("frame index of %s not cached: %s", path.name, error)
        connection.close()  # broken: the next query reconnects
    return index


def _lookup(camera: Camera, path: Path, known: dict):
    segment = known.get(str(path)) or _segment(camera, path)
    if segment is None:
        return None, None
    return segment, SegmentFrameIndex.objects.filter(segment=segment).first()


def _uncached(path: Path, error: Exception) -> SegmentIndex:
    log.warning("frame index cache unavailable (%s); indexing %s afresh", error, path.name)
    connection.close()
    counts["uncached"] += 1
    return build_index(path)


def _segment(camera: Camera, path: Path) -> Segment | None:
    root = Path(camera.archive_path).resolve()
    try:
        relative = path.resolve().relative_to(root).as_posix()
    except ValueError:
        return None
    return Segment.objects.filter(camera=camera, path=relative).first()


def _stored(row: SegmentFrameIndex | None, path: Path) -> SegmentIndex | None:
    if row is None:
        return None
    try:
        return SegmentIndex.from_bytes(bytes(row.data), path)
    except ValueError:  # written by another version of the index format
        return None


def _store(segment: Segment, index: SegmentIndex) -> None:
    values = {
        "size": index.size,
        "mtime": index.mtime,
        "frames": sum(len(stream) for stream in index.streams()),
        "data": index.to_bytes(),
    }
    try:
        with transaction.atomic():
            SegmentFrameIndex.objects.update_or_create(segment=segment, defaults=values)
    except IntegrityError:  # another worker stored the same segment's index first
        SegmentFrameIndex.objects.filter(segment=segment).update(**values)
