"""Periodic housekeeping, run every minute on the `maintenance` queue (see arm_maintenance).

- expire finished exports after PSIMEXPORT_RETENTION_HOURS (file removed, state Deleted),
  except those under legal hold (`keep`);
- recover tasks whose worker died (InProgress without a live lease): re-queue once, then fail;
- re-queue Created tasks whose job vanished from Redis (e.g. Redis restarted empty);
- remove leftover folders under EXPORTS_DIR that belong to no live task;
- queue a full check of the audit trail's hash chain, once an hour;
- re-index the cameras' archives.

Recovery must never wait behind the work it frees: the round runs on a queue of its own that
every worker serves before `exports`, and every worker re-arms the schedule when it starts and
every minute after (a Redis flush or a fresh Redis loses it otherwise). Each step re-checks a
task under a row lock before it touches the task's files.
"""

import logging
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq.job import Job

from exports import jobs, lease
from exports.models import AuditEvent, ExportTask
from exports.tasks import record_audit, remove_task_files

log = logging.getLogger(__name__)

State = ExportTask.State
QUEUE_NAME = "maintenance"
INTERVAL = timedelta(seconds=60)
PENDING_KEY = "psimexport:maintenance:pending"
LAST_RUN_KEY = "psimexport:maintenance:last_run"
MAX_ATTEMPTS = 2  # the first run and one re-queue after a lost worker
# A Created task's job is queued right after its row commits; give that a moment.
ORPHAN_JOB_GRACE = timedelta(seconds=30)


def run_maintenance(reschedule: bool = True, reindex: bool = True) -> dict:
    """One round of housekeeping; schedules the next a minute later. A step that fails is
    logged and the others still run."""
    steps = {
        "expired": expire_finished_exports,
        "recovered": recover_stuck_tasks,
        "requeued": requeue_lost_jobs,
        "orphans": remove_orphan_folders,
        "audit_check_queued": _check_audit_chain,
    }
    if reindex:
        steps["indexed"] = _reindex
        steps["hashed"] = _hash_sources
    report = {}
    try:
        for name, step in steps.items():
            try:
                report[name] = jobs.with_db_retry(step)
            except Exception as error:  # noqa: BLE001 - one broken step must not stop the rest
                log.error("maintenance step %s failed: %s", name, error, exc_info=True)
                report[name] = f"error: {error}"
        _connection().set(LAST_RUN_KEY, f"{time.time():.3f}")
        return report
    finally:
        if reschedule:
            _forget_this_round()
            schedule_maintenance(INTERVAL)


def _forget_this_round() -> None:
    """This round is no longer the pending one (a running round counts as pending for
    arm_maintenance, so a worker starting meanwhile does not queue a second)."""
    from rq import get_current_job

    job = get_current_job()
    conn = _connection()
    if job is not None and conn.get(PENDING_KEY) == job.id.encode():
        conn.delete(PENDING_KEY)


def _check_audit_chain() -> bool:
    from exports.audit_chain import check_periodically

    return check_periodically()


# One camera's re-index may take this long per round; a hung archive (a mount gone away)
# must not hold the round, or the worker serving it, for ever.
REINDEX_BUDGET_SECONDS = 20.0


def _reindex() -> int:
    """Re-index every enabled camera, each within its budget; returns how many finished."""
    from exports import timebox
    from exports.archive import ArchiveError, index_camera
    from exports.models import Camera

    finished = 0
    for camera in Camera.objects.filter(enabled=True):
        try:
            timebox.within_budget(
                f"index-{camera.pk}", lambda c=camera: index_camera(c), REINDEX_BUDGET_SECONDS
            )
            finished += 1
        except timebox.NotDone as late:
            log.error("camera %s: re-index %s (archive hangs?)", camera.camera_id, late)
        except ArchiveError as error:
            log.error("camera %s: %s", camera.camera_id, error)
        except Exception:  # noqa: BLE001 - the other cameras still get indexed
            log.exception("camera %s: indexing failed", camera.camera_id)
    return finished


def get_queue():
    import django_rq

    return django_rq.get_queue(QUEUE_NAME, commit_mode="auto")


def _connection():
    return get_queue().connection


def last_run_at() -> float | None:
    """Unix time the last maintenance round ended, None if none ran since Redis started."""
    value = _connection().get(LAST_RUN_KEY)
    return float(value) if value else None


def schedule_maintenance(delay: timedelta = timedelta(0)):
    """Queue the next round unless one is already pending; returns the pending job.

    A Redis key names the pending job (ids are not reused: rq would mark a re-used id
    finished when the running round returns), so calling this again is harmless.
    """
    queue = get_queue()
    conn = queue.connection
    pending = conn.get(PENDING_KEY)
    if pending:
        try:
            job = Job.fetch(pending.decode(), connection=conn)
        except Exception:  # noqa: BLE001 - gone: queue a new one
            job = None
        if job is not None and job.get_status(refresh=False) in ("queued", "scheduled", "started"):
            return job
    if delay:
        job = queue.enqueue_in(delay, run_maintenance, result_ttl=600, description="maintenance")
    else:
        job = queue.enqueue(run_maintenance, result_ttl=600, description="maintenance")
    conn.set(PENDING_KEY, job.id)
    return job


def arm_maintenance() -> None:
    """Make sure a round is pending; called whenever a worker starts and every minute by
    each worker. Never raises: a worker must start even while Redis is briefly away."""
    try:
        schedule_maintenance()
    except (redis.RedisError, OSError) as error:
        log.warning("cannot schedule maintenance: %s", error)


def expire_finished_exports(now=None) -> int:
    """Finished exports past their expiry: file removed, state Deleted. An export under
    legal hold is skipped until released (re-checked under the row lock, so a hold set a
    moment ago wins)."""
    now = now or timezone.now()
    due = ExportTask.objects.filter(state=State.READY, expires_at__lte=now, keep=False)
    expired = 0
    for task_id in due.values_list("id", flat=True):
        with transaction.atomic():
            task = _locked(task_id, state=State.READY, expires_at__lte=now, keep=False)
            if task is None:
                continue
            ExportTask.objects.filter(id=task.id).update(state=State.DELETED)
            remove_task_files(task)
            record_audit(
                task, AuditEvent.Action.EXPIRE,
                retention_hours=settings.PSIMEXPORT_RETENTION_HOURS,
            )
        expired += 1
    return expired


def _locked(task_id, **conditions):
    """The task, row-locked until the transaction ends, if it still meets the conditions."""
    return (
        ExportTask.objects.select_for_update()
        .select_related("camera")
        .filter(id=task_id, **conditions)
        .first()
    )


def recover_stuck_tasks(now=None) -> int:
    """InProgress tasks whose run lost its worker: re-queue once, then fail with a message.

    Under the row lock: the task is still that attempt and its lease is still gone; only
    then its state changes and its files go, so a run finishing meanwhile either published
    first (the task is Ready, nothing happens here) or cannot publish any more.
    """
    now = now or timezone.now()
    grace = now - timedelta(seconds=settings.PSIMEXPORT_JOB_LEASE_SECONDS)
    stuck = ExportTask.objects.filter(state=State.IN_PROGRESS, started_at__lt=grace)
    conn = jobs.get_queue().connection
    recovered = 0
    for task_id, attempt_id in stuck.values_list("id", "attempt_id"):
        if lease.lease_is_alive(task_id, conn, attempt_id):
            continue
        with transaction.atomic():
            task = _locked(task_id, state=State.IN_PROGRESS, attempt_id=attempt_id)
            if task is None or lease.lease_is_alive(task_id, conn, attempt_id):
                continue
            requeue = task.attempts < MAX_ATTEMPTS and task.source != ExportTask.Source.COMMAND
            remove_task_files(task)
            if requeue:
                ExportTask.objects.filter(id=task.id).update(
                    state=State.CREATED, percents=0, started_at=None, attempt_id=None
                )
                # Last in the transaction: the audit chain's lock is held until commit.
                record_audit(task, AuditEvent.Action.RETRY, reason="the worker running it stopped")
        if requeue:
            _requeue_lost(task)
        else:
            _fail_lost(task, _gave_up_message(task))
        recovered += 1
    return recovered


def _gave_up_message(task) -> str:
    if task.source == ExportTask.Source.COMMAND:
        return "the export_archive command running this export stopped"
    return (
        f"the worker running this export stopped (killed or host restarted) "
        f"{task.attempts} times; giving up — retry the task"
    )


def _requeue_lost(task) -> None:
    log.warning("task %s lost its worker; queued again", task.id)
    try:
        jobs.enqueue_export(task, at_front=True)  # it was running: it goes first again
    except jobs.QueueUnavailable:
        _fail_lost(task, "the worker stopped and the job queue is unavailable")


def _fail_lost(task, message: str) -> None:
    with transaction.atomic():
        changed = ExportTask.objects.filter(
            id=task.id, state__in=ExportTask.ACTIVE_STATES
        ).update(state=State.FAILED, error_message=message, finished_at=timezone.now())
        if changed:
            record_audit(task, AuditEvent.Action.FAIL, error=message)


def requeue_lost_jobs(now=None) -> int:
    """Created tasks whose rq job no longer exists (or ended): queue them again."""
    now = now or timezone.now()
    waiting = ExportTask.objects.filter(
        state=State.CREATED, created_at__lt=now - ORPHAN_JOB_GRACE
    ).select_related("camera")
    conn = jobs.get_queue().connection
    requeued = 0
    for task in waiting.iterator():
        try:
            if jobs.job_is_live(task.id, conn):
                continue
            jobs.enqueue_export(task)
        except (jobs.QueueUnavailable, redis.RedisError) as error:
            log.warning("cannot re-queue task %s: %s", task.id, error)
            continue
        log.warning("task %s had no job in Redis; queued again", task.id)
        requeued += 1
    return requeued


def remove_orphan_folders() -> int:
    """Folders under EXPORTS_DIR named like a task id whose task has no file to keep, and
    working folders of runs that are no longer their task's current attempt."""
    root = Path(settings.EXPORTS_DIR)
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        try:
            task_id = uuid.UUID(entry.name)
        except ValueError:
            continue
        if entry.is_dir():
            removed += _tidy_task_folder(task_id, entry)
    return removed


def _tidy_task_folder(task_id, folder: Path) -> int:
    with transaction.atomic():
        task = _locked(task_id)
        if task is None or task.state not in (State.READY, State.CREATED, State.IN_PROGRESS):
            shutil.rmtree(folder, ignore_errors=True)
            return 1
        current = f".attempt-{task.attempt_id}" if task.state == State.IN_PROGRESS else None
        stale = [d for d in folder.glob(".attempt-*") if d.name != current]
        for attempt in stale:
            shutil.rmtree(attempt, ignore_errors=True)
        return len(stale)


def _hash_sources() -> int | str:
    """SHA-256 of newly completed segments for export manifests (exports.source_hashes),
    within a budget; in a thread of its own so a hung archive cannot hold the round."""
    from exports import source_hashes, timebox

    budget = source_hashes.BACKGROUND_BUDGET_SECONDS
    try:
        return timebox.within_budget(
            "source-hashes", source_hashes.hash_pending_segments, budget + REINDEX_BUDGET_SECONDS
        )
    except timebox.NotDone:
        return "late (archive hangs?)"


# -- indexing on request ----------------------------------------------------------------------

INDEX_JOB_TIMEOUT = 600


def enqueue_index(camera) -> None:
    """Index one camera in a worker (the admin's "Index now"): never inside a web request.
    On the maintenance queue, which workers serve before exports."""
    get_queue().enqueue_call(
        index_camera_job,
        args=(camera.pk,),
        job_id=f"index-{camera.pk}-{uuid.uuid4().hex[:8]}",
        timeout=INDEX_JOB_TIMEOUT,
        result_ttl=3600,
        description=f"index camera {camera.camera_id}",
    )


def index_camera_job(camera_pk: int) -> str:
    from exports.archive import index_camera
    from exports.models import Camera

    camera = Camera.objects.filter(pk=camera_pk).first()
    if camera is None:
        return "camera gone"
    summary = index_camera(camera)
    log.info("camera %s indexed: %s", camera.camera_id, summary)
    return str(summary)
