"""The rq job of an export: claim the task, run the media engine, record the outcome.

The task row is the source of truth; Redis only carries the job (id = task id). A job that
finds its task no longer `Created` does nothing, so a duplicate or stale job is harmless.
"""

import functools
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from datetime import UTC, timedelta
from pathlib import Path

import django_rq
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from rq import Retry
from rq.timeouts import JobTimeoutException

from exports.models import AuditEvent, ExportTask

log = logging.getLogger(__name__)

State = ExportTask.State
QUEUE_NAME = "exports"

# A running job refreshes this lease; a task InProgress without one has lost its worker.
LEASE_SECONDS = int(os.environ.get("PSIMEXPORT_JOB_LEASE_SECONDS", "30"))
LEASE_KEY = "psimexport:lease:{}"
# When all PSIMEXPORT_MAX_CONCURRENT slots are taken, the job is tried again this much later.
BUSY_RETRY_SECONDS = 5
BUSY_RETRIES = 100_000
PROGRESS_INTERVAL = 0.3
CANCEL_CHECK_INTERVAL = 0.5



class QueueUnavailable(Exception):
    """Redis could not be reached to queue a job."""


class AllSlotsBusy(Exception):
    """PSIMEXPORT_MAX_CONCURRENT exports already run; rq retries the job later."""


@functools.cache
def get_queue():
    """The exports queue, built once per process so its Redis connection pool is reused.

    commit_mode "auto": enqueue when called; create_export_task already defers to the commit
    itself and must see a Redis failure at once to answer 503.
    """
    return django_rq.get_queue(QUEUE_NAME, commit_mode="auto")


def job_timeout(task) -> int:
    """Generous: ten minutes plus twice the range's length (transcoding can be slower than
    remuxing, but rarely slower than half real time)."""
    return int(600 + 2 * (task.end - task.start).total_seconds())


def enqueue_export(task) -> None:
    queue = get_queue()
    try:
        # On a pipeline rq sends the job in one round trip to Redis instead of two.
        with queue.connection.pipeline() as pipe:
            queue.enqueue_call(
                run_export_job,
                args=(str(task.id),),
                job_id=str(task.id),
                timeout=job_timeout(task),
                result_ttl=3600,
                failure_ttl=7 * 86400,
                retry=Retry(max=BUSY_RETRIES, interval=BUSY_RETRY_SECONDS),
                description=f"export {task}",
                pipeline=pipe,
            )
            pipe.execute()
    except (redis.RedisError, OSError) as error:
        log.error("cannot queue export %s: %s", task.id, error)
        raise QueueUnavailable(str(error)) from error


# -- the job ----------------------------------------------------------------------------------


def run_export_job(task_id: str) -> str:
    """Entry point rq calls. Returns the final state (shown in rq's dashboard)."""
    task = claim_task(task_id)
    if task is None:
        state = ExportTask.objects.filter(id=task_id).values_list("state", flat=True).first()
        return f"nothing to do ({state or 'task gone'})"
    with Lease(task.id):
        out_path = _output_path(task)
        execute_task(task, out_path)
    return ExportTask.objects.filter(id=task.id).values_list("state", flat=True).first()


def claim_task(task_id):
    """Created → InProgress atomically, within the concurrency limit; None if not ours to run.

    Counting running tasks and claiming happen under one lock (PostgreSQL advisory lock;
    SQLite's IMMEDIATE transactions serialise writers), so N workers never run more than
    PSIMEXPORT_MAX_CONCURRENT exports at once. Raises AllSlotsBusy when the limit is reached.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x7053494D])
        if not ExportTask.objects.filter(id=task_id, state=State.CREATED).exists():
            return None
        running = ExportTask.objects.filter(state=State.IN_PROGRESS).count()
        if running >= settings.PSIMEXPORT_MAX_CONCURRENT:
            raise AllSlotsBusy(
                f"{running} exports running (PSIMEXPORT_MAX_CONCURRENT="
                f"{settings.PSIMEXPORT_MAX_CONCURRENT}); trying again in {BUSY_RETRY_SECONDS} s"
            )
        claimed = ExportTask.objects.filter(id=task_id, state=State.CREATED).update(
            state=State.IN_PROGRESS,
            started_at=timezone.now(),
            percents=0,
            attempts=F("attempts") + 1,
        )
    if not claimed:
        return None
    task = ExportTask.objects.select_related("camera").get(id=task_id)
    _audit(task, AuditEvent.Action.START, attempt=task.attempts)
    return task


def output_file_name(task) -> str:
    """camera-1_2026-11-20T10-00-13Z_2026-11-20T10-00-41Z.mp4 — never holds path separators."""
    camera = re.sub(r"[^A-Za-z0-9._-]", "_", task.camera.camera_id).strip(".") or "camera"

    def stamp(moment):
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")

    return f"camera-{camera}_{stamp(task.start)}_{stamp(task.end)}.{task.format}"


def _output_path(task) -> Path:
    return Path(settings.EXPORTS_DIR) / str(task.id) / output_file_name(task)


def execute_task(task, out_path: Path, on_progress=None, keep_in_exports=True):
    """Run the engine for a claimed (InProgress) task and record the result on the row.

    Shared by the worker and `manage.py export_archive`. Returns the engine's ExportResult,
    or None when the task failed or was cancelled (the row says which and why).
    """
    from exports import frame_cache
    from exports.archive import ArchiveError, segment_abspath, segments_covering
    from exports.media import engine as media

    reporter = ProgressReporter(task.id, on_progress)
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        coverage = segments_covering(task.camera, task.start, task.end)
        if not coverage.segments:
            raise media.NoRecordingError("the recording of this range is no longer there")
        sources = [
            media.SourceSegment(segment_abspath(task.camera, seg), seg.start, seg.end)
            for seg in coverage.segments
        ]
        result = media.export(
            sources,
            task.start,
            task.end,
            task.format,
            out_path,
            progress=reporter.progress,
            cancelled=reporter.cancelled,
            title=f"{task.camera.display_name} {task.start:%Y-%m-%d %H:%M:%S}Z",
            # Frame indexes cached beside the archive index: a second export reads no file twice.
            index_for=frame_cache.indexer(task.camera, coverage.segments),
        )
    except media.ExportCancelled:
        _discard(out_path, keep_in_exports)
        log.info("export %s cancelled", task.id)
        return None
    except media.NoRecordingError as error:
        _fail(task, out_path, keep_in_exports, f"no recording: {error}")
        return None
    except media.ExportError as error:
        _fail(task, out_path, keep_in_exports, f"export failed: {error}")
        return None
    except ArchiveError as error:
        _fail(task, out_path, keep_in_exports, f"archive error: {error}")
        return None
    except FileNotFoundError as error:
        _fail(
            task, out_path, keep_in_exports,
            f"a recorded segment was deleted while it was being exported ({Path(error.filename or '').name or error})",
        )
        return None
    except JobTimeoutException:
        _fail(
            task, out_path, keep_in_exports,
            f"the export took longer than its time limit of {job_timeout(task)} s",
        )
        return None
    except Exception as error:  # the row must never stay InProgress because of a bug
        log.exception("export %s crashed", task.id)
        _fail(task, out_path, keep_in_exports, f"internal error: {type(error).__name__}: {error}")
        return None
    _finish(task, out_path, result, keep_in_exports)
    return result


def _finish(task, out_path: Path, result, keep_in_exports: bool) -> None:
    size = out_path.stat().st_size
    digest = _sha256(out_path)
    now = timezone.now()
    retention = timedelta(hours=settings.PSIMEXPORT_RETENTION_HOURS)
    details = result.to_dict() if hasattr(result, "to_dict") else {}
    stored = (
        str(out_path.relative_to(Path(settings.EXPORTS_DIR))) if keep_in_exports else ""
    )
    if not keep_in_exports:
        details["output"] = str(out_path)
    finished = ExportTask.objects.filter(id=task.id, state=State.IN_PROGRESS).update(
        state=State.READY,
        percents=100,
        output_path=stored,
        size=size,
        sha256=digest,
        technique=str(getattr(result, "technique", "") or "")[:32],
        gaps=_json_gaps(getattr(result, "gaps", [])),
        details=_jsonable(details),
        finished_at=now,
        expires_at=now + retention if keep_in_exports else None,
        error_message=_skipped_warning(result),
    )
    if not finished:  # cancelled or deleted at the last moment
        _discard(out_path, keep_in_exports)
        return
    task.refresh_from_db()
    _audit(task, AuditEvent.Action.FINISH, bytes=size, sha256=digest, technique=task.technique)


def _skipped_warning(result) -> str:
    """A ready file that lacks recorded segments says so (in ErrorMessage, as a warning):
    the recorder may have deleted them while the export ran."""
    skipped = list(getattr(result, "skipped", []) or [])
    if not skipped:
        return ""
    return (
        f"exported without {len(skipped)} recorded segment(s) that could not be read "
        f"(deleted while exporting?): {'; '.join(skipped)}"
    )[:2000]


def _fail(task, out_path, keep_in_exports, message) -> None:
    _discard(out_path, keep_in_exports)
    failed = ExportTask.objects.filter(id=task.id, state=State.IN_PROGRESS).update(
        state=State.FAILED, error_message=message[:2000], finished_at=timezone.now()
    )
    if failed:
        task.refresh_from_db()
        _audit(task, AuditEvent.Action.FAIL, error=message[:2000])
    log.warning("export %s failed: %s", task.id, message)


def _discard(out_path: Path, keep_in_exports: bool) -> None:
    """Remove what an export left: its whole task folder, or (command line) its file."""
    if keep_in_exports:
        shutil.rmtree(out_path.parent, ignore_errors=True)
    else:
        out_path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _json_gaps(gaps) -> list:
    out = []
    for gap in gaps or []:
        if isinstance(gap, dict):
            out.append(_jsonable(gap))
        else:
            start, end = gap[0], gap[1]
            out.append({"From": _iso(start), "To": _iso(end)})
    return out


def _iso(value):
    from exports.forms import format_psim_time

    if hasattr(value, "astimezone"):
        return format_psim_time(value)
    return value


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "astimezone"):
        return _iso(value)
    return str(value)


def _audit(task, action, **detail) -> None:
    from exports.tasks import record_audit

    record_audit(task, action, **detail)


# -- progress, cancellation and the lease -----------------------------------------------------


class ProgressReporter:
    """Writes progress to the row a few times a second and tells the engine when to stop.

    The conditional progress UPDATE doubles as the cancellation check: once the row is no
    longer InProgress (cancelled, deleted) nothing matches and the engine is told to stop.
    """

    def __init__(self, task_id, on_progress=None):
        self.task_id = task_id
        self.on_progress = on_progress
        self.percents = 0
        self.stopped = False
        self._written_at = 0.0
        self._checked_at = time.monotonic()

    def progress(self, value) -> None:
        fraction = float(value)
        if fraction > 1.0:  # the engine may report percent
            fraction /= 100.0
        percents = max(self.percents, min(99, int(fraction * 100)))
        if self.on_progress is not None:
            self.on_progress(fraction)
        now = time.monotonic()
        if percents == self.percents or now - self._written_at < PROGRESS_INTERVAL:
            return
        self._written_at = self._checked_at = now
        self.percents = percents
        updated = ExportTask.objects.filter(
            id=self.task_id, state=State.IN_PROGRESS, percents__lt=percents
        ).update(percents=percents)
        if not updated:
            self._check_state()

    def cancelled(self) -> bool:
        if not self.stopped and time.monotonic() - self._checked_at >= CANCEL_CHECK_INTERVAL:
            self._check_state()
        return self.stopped

    def _check_state(self) -> None:
        self._checked_at = time.monotonic()
        state = ExportTask.objects.filter(id=self.task_id).values_list("state", flat=True).first()
        self.stopped = state != State.IN_PROGRESS


class Lease:
    """A Redis key with a short TTL that a background thread keeps alive while the job runs.

    If the worker dies (SIGKILL, reboot) the key expires and maintenance re-queues the task.
    """

    def __init__(self, task_id):
        self.key = LEASE_KEY.format(task_id)
        self.connection = get_queue().connection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{task_id}")

    def __enter__(self):
        self.connection.set(self.key, os.getpid(), ex=LEASE_SECONDS)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.connection.delete(self.key)
        except redis.RedisError:
            pass

    def _renew(self):
        while not self._stop.wait(max(1.0, LEASE_SECONDS / 3)):
            try:
                self.connection.set(self.key, os.getpid(), ex=LEASE_SECONDS)
            except redis.RedisError as error:
                log.warning("cannot renew lease %s: %s", self.key, error)


def lease_is_alive(task_id, conn=None) -> bool:
    conn = conn or get_queue().connection
    return bool(conn.exists(LEASE_KEY.format(task_id)))
