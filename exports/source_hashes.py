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
import threading
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


def stable_sha256(path: Path, tick=None) -> tuple[int, float, str] | None:
    """(size, mtime, SHA-256) of a file that did not change while it was read, else None."""
    before = os.stat(path)
    digest = file_sha256(path, tick=tick)
    after = os.stat(path)
    if (before.st_size, before.st_mtime) != (after.st_size, after.st_mtime):
        return None
    return after.st_size, after.st_mtime, digest


def store_hash(segment: Segment, path: Path, tick=None, hashed=None) -> bool:
    """Hash a complete segment (or take `hashed`, a stable_sha256 of it) and keep it, unless
    the file changed while it was read."""
    hashed = hashed or stable_sha256(path, tick)
    if hashed is None:
        return False
    size, mtime, digest = hashed
    Segment.objects.filter(pk=segment.pk, sha256="").update(
        sha256=digest, sha256_size=size, sha256_mtime=mtime
    )
    segment.sha256, segment.sha256_size, segment.sha256_mtime = digest, size, mtime
    return True


class _Stopped(Exception):
    pass


class ParallelHasher:
    """Hashes the complete, not yet hashed segments of an export in a thread of its own while
    the engine reads them, so a first export's hashing overlaps the copy (hashlib and file
    reads release the GIL). Computes only; the manifest stores what it used."""

    def __init__(self, camera: Camera, segments):
        self.paths = []
        for segment in segments:
            if segment.complete and not segment.sha256:
                try:
                    self.paths.append(segment_abspath(camera, segment))
                except ArchiveError:
                    continue
        self.hashed: dict[str, tuple[int, float, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="source-hashes")

    def __enter__(self):
        if self.paths:
            self._thread.start()
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None:  # the export failed: its sources' hashes are not needed now
            self._stop.set()

    def _run(self):
        def stop_check():
            if self._stop.is_set():
                raise _Stopped

        for path in self.paths:
            try:
                hashed = stable_sha256(path, stop_check)
            except _Stopped:
                return
            except OSError:
                continue
            if hashed is not None:
                self.hashed[str(path)] = hashed

    def results(self, keepalive) -> dict:
        """Wait for the thread (calling keepalive() twice a second) and return its hashes."""
        while self._thread.is_alive():
            self._thread.join(0.5)
            keepalive()
        return dict(self.hashed)


def describe_sources(camera: Camera, used, tick=None, hashed=None) -> list[dict]:
    """The manifest's `sources`: one entry per file the export read.

    `used` is [(absolute path, size read, mtime then)] from the engine's result; `hashed`
    what a ParallelHasher computed meanwhile ({path: (size, mtime, sha256)})."""
    hashed = hashed or {}
    root = Path(camera.archive_path).resolve()
    relative = {}
    for path, size, mtime in used:
        try:
            relative[Path(path).resolve().relative_to(root).as_posix()] = (Path(path), size, mtime)
        except ValueError:
            relative[Path(path).name] = (Path(path), size, mtime)
    rows = {s.path: s for s in Segment.objects.filter(camera=camera, path__in=list(relative))}
    return [
        _describe(name, rows.get(name), *relative[name], tick=tick,
                  hashed=hashed.get(str(relative[name][0])))
        for name in sorted(relative)
    ]


def _describe(name, segment, path: Path, size: int, mtime: float, tick, hashed=None) -> dict:
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
            store_hash(segment, path, tick, hashed)
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
