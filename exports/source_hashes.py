"""SHA-256 of the recorded segments an export reads, for its manifest.

A complete segment is hashed once and the hash kept on its `Segment` row with the size and
mtime it had. Maintenance hashes newly completed segments in the background (newest first,
within a budget per round, while their bytes are likely still in the page cache), so an
export of recent footage only compares size and mtime; a segment nobody hashed yet (footage
older than this feature) is hashed by the first export that uses it.

The first hash is kept: a segment whose size or mtime differ from it later is reported in
every manifest that uses it (with the first hash and the current one), never quietly
re-hashed. A segment still being written is hashed over the bytes the export read (its first
`size` bytes) each time and not stored, since it will grow.
"""

import hashlib
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from django.db.models import Q

from exports.archive import ArchiveError, segment_abspath
from exports.models import Camera, Segment

log = logging.getLogger(__name__)
CHUNK = 1 << 20
# Seconds of hashing one maintenance round may spend (about a sixth of a core while an old
# archive is caught up; new footage needs far less).
BACKGROUND_BUDGET_SECONDS = 10.0


def file_sha256(path: Path, limit: int | None = None, tick=None) -> str:
    """SHA-256 of the file's bytes (its first `limit` bytes when given); `tick()` per MiB."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            if tick is not None:
                tick()
    if remaining:
        raise OSError(f"{path.name} is shorter than the {limit} bytes the export read")
    return digest.hexdigest()


def iso_mtime(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def store_hash(segment: Segment, path: Path, tick=None) -> bool:
    """Hash a complete segment and keep it, unless the file changed while it was read."""
    before = os.stat(path)
    digest = file_sha256(path, tick=tick)
    after = os.stat(path)
    if (before.st_size, before.st_mtime) != (after.st_size, after.st_mtime):
        return False
    Segment.objects.filter(pk=segment.pk, sha256="").update(
        sha256=digest, sha256_size=after.st_size, sha256_mtime=after.st_mtime
    )
    segment.sha256, segment.sha256_size, segment.sha256_mtime = (
        digest, after.st_size, after.st_mtime
    )
    return True


def describe_sources(camera: Camera, used, tick=None) -> list[dict]:
    """The manifest's `sources`: one entry per file the export read.

    `used` is [(absolute path, size read, mtime then)] from the engine's result."""
    root = Path(camera.archive_path).resolve()
    relative = {}
    for path, size, mtime in used:
        try:
            relative[Path(path).resolve().relative_to(root).as_posix()] = (Path(path), size, mtime)
        except ValueError:
            relative[Path(path).name] = (Path(path), size, mtime)
    rows = {s.path: s for s in Segment.objects.filter(camera=camera, path__in=list(relative))}
    return [
        _describe(name, rows.get(name), *relative[name], tick=tick) for name in sorted(relative)
    ]


def _describe(name, segment, path: Path, size: int, mtime: float, tick) -> dict:
    entry = {"path": name, "size": size, "mtime": iso_mtime(mtime), "sha256": None,
             "complete": bool(segment is not None and segment.complete)}
    try:
        now = os.stat(path)
        if not entry["complete"]:
            # Still being written: the bytes this export read, hashed now, not kept.
            entry["sha256"] = file_sha256(path, limit=size, tick=tick)
            entry["hashed"] = f"first {size} bytes (the file was still being written)"
            return entry
        if (now.st_size, now.st_mtime) != (size, mtime):
            entry["changed"] = (f"after the export read it: now {now.st_size} bytes, "
                                f"mtime {iso_mtime(now.st_mtime)}")
        if not segment.sha256:
            store_hash(segment, path, tick)
        if segment.sha256 and (segment.sha256_size, segment.sha256_mtime) == (size, mtime):
            entry["sha256"] = segment.sha256
        elif segment.sha256:
            entry["changed_since_hashed"] = {
                "size": segment.sha256_size, "mtime": iso_mtime(segment.sha256_mtime),
                "sha256": segment.sha256,
            }
            if "changed" not in entry:
                entry["sha256"] = file_sha256(path, tick=tick)
    except OSError as error:
        entry["unreadable"] = f"could not be hashed: {error.strerror or error}"
    return entry


def hash_pending_segments(budget_seconds: float = BACKGROUND_BUDGET_SECONDS) -> int:
    """Maintenance: hash complete segments that have no hash yet, newest first, until the
    budget is spent. Returns how many were hashed."""
    deadline = time.monotonic() + budget_seconds
    hashed = 0
    pending = (
        Segment.objects.filter(complete=True, sha256="", camera__enabled=True)
        .select_related("camera")
        .order_by("-start")
    )
    skipped = Q()
    while time.monotonic() < deadline:
        batch = list(pending.exclude(skipped)[:50])
        if not batch:
            break
        for segment in batch:
            if time.monotonic() >= deadline:
                break
            try:
                stored = store_hash(segment, segment_abspath(segment.camera, segment))
            except (OSError, ArchiveError) as error:
                log.info("segment %s not hashed: %s", segment.path, error)
                stored = False
            if stored:
                hashed += 1
            else:  # gone or changing: the indexer will catch up with it
                skipped |= Q(pk=segment.pk)
    return hashed
