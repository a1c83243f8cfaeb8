"""The rq job of an export: claim the task, run the media engine, record the outcome.

The task row is the source of truth; Redis only carries the job (id = task id). A job that
finds its task no longer `Created` does nothing, so a duplicate or stale job is harmless.

Every run has an identity, `attempt_id`, written when it claims the task. Each later write of
the run (progress, finish, fail) and each file it touches is conditional on it: a run that
lost its lease and was replaced can neither finish, fail nor delete the files of the current
run. A run works in a folder of its own (`<task id>/.attempt-<attempt id>/`) and publishes
its file into the task's folder in the same transaction that marks the task ready.
"""

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from datetime import UTC, timedelta
from pathlib import Path

import django_rq
import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rq.job import Job, get_current_job
from rq.timeouts import JobTimeoutException

from exports import options
from exports.lease import Lease
from exports.models import AuditEvent, ExportTask
from exports.stall import ExportStalled, StallWatch

log = logging.getLogger(__name__)

State = ExportTask.State
QUEUE_NAME = "exports"

# When all PSIMEXPORT_MAX_CONCURRENT slots are taken, the job runs again this much later.
BUSY_RETRY_SECONDS = 5
PROGRESS_INTERVAL = 0.3
CANCEL_CHECK_INTERVAL = 0.5
# Job states in which rq will still run the job (anything else: the job is done or lost).
LIVE_JOB_STATES = ("queued", "scheduled", "started", "deferred")


class QueueUnavailable(Exception):
    """Redis could not be reached to queue a job."""


class AllSlotsBusy(Exception):
    """PSIMEXPORT_MAX_CONCURRENT exports already run; the job waits and runs again later."""


def with_db_retry(step, *args, **kwargs):
    """Run a database step, reconnecting and retrying it (bounded) when the connection is lost.

    A job outlives short database outages (a restart, connections terminated by an operator):
    it reconnects and repeats the step instead of crashing with the task InProgress.
    """
    from django.db import close_old_connections

    deadline = time.monotonic() + settings.PSIMEXPORT_DB_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            return step(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            if connection.in_atomic_block or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable (%s); reconnecting in %.1f s", error, delay)
            connection.close()  # a broken connection is not reused; the next query reconnects
            close_old_connections()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@functools.cache
def get_queue():
    """The exports queue, built once per process so its Redis connection pool is reused.

    commit_mode "auto": enqueue when called; create_export_task already defers to the commit
    itself and must see a Redis failure at once to answer 503.
    """
    return django_rq.get_queue(QUEUE_NAME, commit_mode="auto")


def job_timeout(task) -> int:
    """Generous: ten minutes plus twice the range's length (transcoding can be slower than
    remuxing, but rarely slower than half real time). An overlay or timelapse decodes every
    frame: 1080p took 2.6 s of work per recorded second on a busy 2-core machine
    (bench/options_bench.py), so those get twelve times the range."""
    factor = 12 if (getattr(task, "overlay", False) or getattr(task, "speed", None)) else 2
    return int(600 + factor * (task.end - task.start).total_seconds())


def enqueue_export(task, at_front: bool | None = None) -> None:
    """Queue the task's job (job id = task id). A user's first active task goes to the front
    of the queue, so one user's thousands of queued exports never make another wait behind
    all of them (see "Jobs" in the README)."""
    queue = get_queue()
    if at_front is None:
        at_front = is_users_only_active_task(task)
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
                description=f"export {task}",
                at_front=at_front,
                pipeline=pipe,
            )
            pipe.execute()
    except (redis.RedisError, OSError) as error:
        log.error("cannot queue export %s: %s", task.id, error)
        raise QueueUnavailable(str(error)) from error


def is_users_only_active_task(task) -> bool:
    """True when the task's user has no other queued or running task."""
    others = ExportTask.objects.filter(state__in=ExportTask.ACTIVE_STATES).exclude(id=task.id)
    if task.requested_by_id is None:
        others = others.filter(requested_by__isnull=True)
    else:
        others = others.filter(requested_by_id=task.requested_by_id)
    return not others.exists()


def job_is_live(task_id, conn=None) -> bool:
    """Whether rq still holds a job for this task that it will run."""
    conn = conn or get_queue().connection
    try:
        job = Job.fetch(str(task_id), connection=conn)
    except Exception:  # noqa: BLE001 - missing or unreadable: lost either way
        return False
    status = job.get_status(refresh=False)
    return getattr(status, "value", status) in LIVE_JOB_STATES


def forget_job(task_id) -> None:
    """Take a cancelled task's job out of the queue so workers do not dequeue it first."""
    try:
        queue = get_queue()
        queue.remove(str(task_id))
        queue.connection.delete(Job.key_for(str(task_id)))
    except (redis.RedisError, OSError) as error:  # the job then finds the task cancelled
        log.warning("cannot remove the job of task %s: %s", task_id, error)


# -- the job ----------------------------------------------------------------------------------


def run_export_job(task_id: str) -> str:
    """Entry point rq calls. Returns the final state (shown in rq's dashboard)."""
    try:
        task = with_db_retry(claim_task, task_id)
    except AllSlotsBusy as busy:
        return wait_for_a_slot(busy)
    if task is None:
        return f"nothing to do ({with_db_retry(current_state, task_id) or 'task gone'})"
    with Lease(task.id, task.attempt_id):
        execute_task(task, _output_path(task), stall_seconds=settings.PSIMEXPORT_STALL_SECONDS)
    return with_db_retry(current_state, task.id)


def current_state(task_id):
    return ExportTask.objects.filter(id=task_id).values_list("state", flat=True).first()


def wait_for_a_slot(busy: AllSlotsBusy) -> str:
    """Run this job again a little later. Waiting is normal, not an error: rq's Repeat
    re-schedules the job after it returns, logged at info level."""
    job = get_current_job()
    if job is None:
        raise busy
    job.repeats_left = 1
    job.repeat_intervals = [BUSY_RETRY_SECONDS]
    log.info("export %s waits: %s", job.id, busy)
    return f"waiting: {busy}"


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
            attempt_id=uuid.uuid4(),
        )
        if not claimed:
            return None
        task = ExportTask.objects.select_related("camera").get(id=task_id)
        _audit(
            task, AuditEvent.Action.START, attempt=task.attempts, attempt_id=str(task.attempt_id)
        )
    return task


def output_file_name(task) -> str:
    """camera-1_2026-11-20T10-00-13Z_2026-11-20T10-00-41Z.mp4 — never holds path separators."""
    camera = re.sub(r"[^A-Za-z0-9._-]", "_", task.camera.camera_id).strip(".") or "camera"

    def stamp(moment):
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")

    if task.format in ("jpg", "png"):  # a still: one instant, to the millisecond
        instant = task.start.astimezone(UTC)
        return f"camera-{camera}_{instant:%Y-%m-%dT%H-%M-%S}.{instant.microsecond // 1000:03d}Z.{task.format}"
    return f"camera-{camera}_{stamp(task.start)}_{stamp(task.end)}.{task.format}"


def _output_path(task) -> Path:
    """Where this run writes: a folder of its own inside the task's folder."""
    return attempt_dir(task) / output_file_name(task)


def attempt_dir(task) -> Path:
    return Path(settings.EXPORTS_DIR) / str(task.id) / f".attempt-{task.attempt_id}"


def this_attempt(task):
    """The task's row, if this run is still its current attempt."""
    return ExportTask.objects.filter(id=task.id, state=State.IN_PROGRESS, attempt_id=task.attempt_id)


def execute_task(
    task, out_path: Path, on_progress=None, keep_in_exports=True, stall_seconds=None
):
    """Run the engine for a claimed (InProgress) task and record the result on the row.

    Shared by the worker and `manage.py export_archive`. Returns the engine's ExportResult,
    or None when the task failed or was cancelled (the row says which and why). With
    `stall_seconds`, an engine that reports nothing for that long is interrupted.
    """
    reporter = ProgressReporter(task, on_progress)
    out_path = options.output_path(task, Path(out_path))
    try:
        with StallWatch(reporter, stall_seconds):
            result = _run_engine(task, out_path, reporter)
        if reporter.stalled:  # the engine skipped what hung: not a file to hand out
            raise ExportStalled("the archive hung")
        if not _finish(task, out_path, result, keep_in_exports):
            return None
    except Exception as error:  # noqa: BLE001 - the row must never stay InProgress
        message = failure_message(task, error, reporter)
        if message is None:  # cancelled, or replaced by a newer run
            _discard(out_path, keep_in_exports)
            log.info("export %s (attempt %s) stopped", task.id, task.attempt_id)
            return None
        _fail(task, out_path, keep_in_exports, message)
        return None
    return result


def _run_engine(task, out_path: Path, reporter):
    from exports import frame_cache
    from exports.archive import segment_abspath, segments_covering
    from exports.media import engine as media
    from exports.source_hashes import ParallelHasher
    from exports.tasks import human_utc

    special = options.run(task, out_path, reporter)  # parts, mosaic (issue 13)
    if special is not None:
        return special
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with_db_retry(index_newest_files, task)
    coverage = with_db_retry(segments_covering, task.camera, task.start, task.end)
    if not coverage.segments:
        raise media.NoRecordingError(
            f"camera {task.camera.camera_id} has no recording between {human_utc(task.start)} "
            f"and {human_utc(task.end)} (or it is no longer there)"
        )
    sources = [
        media.SourceSegment(segment_abspath(task.camera, seg), seg.start, seg.end)
        for seg in coverage.segments
    ]
    # Picture options (still, overlay, timelapse) take their own engine entry.
    from exports.media.options import export_with_options
    from exports.option_fields import picture_options

    picture = picture_options(task)
    run = media.export if picture is None else functools.partial(export_with_options, options=picture)
    # Sources not hashed yet (exports.source_hashes) are hashed while the engine copies.
    with ParallelHasher(task.camera, coverage.segments) as hasher:
        result = run(
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
        result.source_hashes = hasher.results(keepalive=lambda: reporter.progress(1.0))
    return result


def index_newest_files(task) -> None:
    """Index the camera's newest files when the range reaches past its last indexed frame:
    a range of the last seconds may have been accepted while the index lagged behind (see
    tasks.create_export_task). In the job's thread, so the stall watch covers a hung archive."""
    from exports.archive import ArchiveError, index_camera

    last = task.camera.last_recording
    if last is not None and task.end <= last:
        return
    try:
        index_camera(task.camera, recent_only=True)
    except ArchiveError as error:  # export what the index knows
        log.warning("export %s: cannot refresh the index: %s", task.id, error)


def failure_message(task, error, reporter=None) -> str | None:
    """What ErrorMessage says about an exception of the engine; None when the run was
    cancelled or replaced (nothing to record)."""
    from exports.archive import ArchiveError
    from exports.media import engine as media
    from exports.signing_keys import SigningKeyError

    if reporter is not None and reporter.stalled:
        return (
            f"the archive of camera {task.camera.camera_id} did not answer for "
            f"{reporter.stalled:.0f} s (a network mount gone away?); export stopped"
        )
    if isinstance(error, media.ExportCancelled):
        return None
    if isinstance(error, media.NoRecordingError):
        return f"no recording: {error}"
    if isinstance(error, media.ExportError):
        return f"export failed: {error}"
    if isinstance(error, ArchiveError):
        return f"archive error: {error}"
    if isinstance(error, FileNotFoundError):
        name = Path(error.filename or "").name or error
        return f"a recorded segment was deleted while it was being exported ({name})"
    if isinstance(error, SigningKeyError):
        return f"the export's manifest cannot be signed: {error}"
    if isinstance(error, JobTimeoutException):
        return f"the export took longer than its time limit of {job_timeout(task)} s"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "the export folder is full (no space left on the device); free space and retry"
    log.error("export %s crashed", task.id, exc_info=error)
    return f"internal error: {type(error).__name__}: {error}"


def _finish(task, out_path: Path, result, keep_in_exports: bool) -> bool:
    """Mark the task ready and publish its file, atomically and only if this run is still
    the task's current attempt. Returns whether it did."""
    size = out_path.stat().st_size
    digest = _sha256(out_path)
    now = timezone.now()
    final = Path(settings.EXPORTS_DIR) / str(task.id) / out_path.name
    details = result.to_dict() if hasattr(result, "to_dict") else {}
    if not keep_in_exports:
        details["output"] = str(out_path)
    evidence = _write_manifest(task, result, out_path, size, digest, now, keep_in_exports)
    fields = dict(
        state=State.READY,
        percents=100,
        output_path=str(final.relative_to(Path(settings.EXPORTS_DIR))) if keep_in_exports else "",
        size=size,
        sha256=digest,
        technique=str(getattr(result, "technique", "") or "")[:32],
        gaps=_json_gaps(getattr(result, "gaps", [])),
        details=_jsonable(details),
        finished_at=now,
        expires_at=now + timedelta(hours=settings.PSIMEXPORT_RETENTION_HOURS)
        if keep_in_exports else None,
        error_message=_skipped_warning(result),
    )
    fields.update(options.finish_fields(result))

    def publish() -> bool:
        # The UPDATE holds the row (PostgreSQL) or the database (SQLite) until the rename is
        # done: maintenance and cancel see either no file and InProgress, or Ready and a file
        # (and the audit trail says so in the same commit).
        with transaction.atomic():
            if not this_attempt(task).update(**fields):
                return False
            if keep_in_exports and (out_path.exists() or not final.is_file()):
                os.replace(out_path, final)  # (already there if a first commit was lost)
                for path in evidence:  # manifest.json and manifest.sig go with it
                    os.replace(path, final.with_name(path.name))
                options.publish(result, out_path.parent, final.parent)
            _audit(task, AuditEvent.Action.FINISH, bytes=size, sha256=digest,
                   technique=fields["technique"])
            return True

    if not with_db_retry(publish):  # cancelled, deleted or replaced at the last moment
        _discard(out_path, keep_in_exports)
        for path in evidence:
            path.unlink(missing_ok=True)
        return False
    if keep_in_exports:
        _discard(out_path, keep_in_exports)  # the now empty attempt folder
    task.refresh_from_db()
    return True


def _write_manifest(task, result, out_path, size, digest, now, keep_in_exports) -> list[Path]:
    """The signed manifest (exports.manifest), written beside the file before it is published:
    in the attempt folder (moved with the file), or beside a command line's output."""
    from exports.manifest import write_signed_manifest

    return with_db_retry(
        write_signed_manifest, task, result, out_path, size, digest, now,
        beside=not keep_in_exports,
    )


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

    def record() -> bool:
        with transaction.atomic():  # the state and its audit line in one commit
            failed = this_attempt(task).update(
                state=State.FAILED, error_message=message[:2000], finished_at=timezone.now()
            )
            if failed:
                _audit(task, AuditEvent.Action.FAIL, error=message[:2000])
            return bool(failed)

    if with_db_retry(record):
        task.refresh_from_db()
    log.warning("export %s failed: %s", task.id, message)


def _discard(out_path: Path, keep_in_exports: bool) -> None:
    """Remove what this run left: its own attempt folder, or (command line) its file."""
    if keep_in_exports:
        shutil.rmtree(out_path.parent, ignore_errors=True)
        with contextlib.suppress(OSError):  # the task's folder, unless another run uses it
            out_path.parent.parent.rmdir()
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


# -- progress and cancellation ----------------------------------------------------------------


class ProgressReporter:
    """Writes progress to the row a few times a second and tells the engine when to stop.

    The conditional progress UPDATE doubles as the cancellation check: once the row is no
    longer this run's (cancelled, deleted, re-queued to a newer attempt) nothing matches and
    the engine is told to stop. A database that is briefly away only delays the next write.
    """

    def __init__(self, task, on_progress=None):
        self.task = task
        self.task_id = task.id
        self.on_progress = on_progress
        self.percents = 0
        self.stopped = False
        self.stalled = 0.0  # seconds without a call, once StallWatch gave up on the engine
        self.called_at = time.monotonic()
        self._written_at = 0.0
        self._checked_at = time.monotonic()

    def progress(self, value) -> None:
        self.called_at = time.monotonic()
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
        try:
            updated = this_attempt(self.task).filter(percents__lt=percents).update(
                percents=percents
            )
        except DatabaseError as error:
            self._lost_database(error)
            return
        self.percents = percents
        if not updated:
            self._check_state()

    def cancelled(self) -> bool:
        self.called_at = time.monotonic()
        if not self.stopped and time.monotonic() - self._checked_at >= CANCEL_CHECK_INTERVAL:
            self._check_state()
        return self.stopped

    def _check_state(self) -> None:
        self._checked_at = time.monotonic()
        try:
            self.stopped = not this_attempt(self.task).exists()
        except DatabaseError as error:
            self._lost_database(error)

    def _lost_database(self, error) -> None:
        """Keep exporting; the next write reconnects (the final one retries until it can)."""
        log.warning("export %s: database unavailable (%s); carrying on", self.task_id, error)
        if not connection.in_atomic_block:
            connection.close()
