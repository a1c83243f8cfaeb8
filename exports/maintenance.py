"""Periodic housekeeping, run every minute by rq's scheduler (see start_maintenance).

- expire finished exports after PSIMEXPORT_RETENTION_HOURS (file removed, state Deleted);
- recover tasks whose worker died (InProgress without a live lease): re-queue once, then fail;
- re-queue Created tasks whose job vanished from Redis (e.g. Redis restarted empty);
- remove leftover folders under EXPORTS_DIR that belong to no live task;
- re-index the cameras' archives.
"""

import logging
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.utils import timezone
from rq.job import Job

from exports import jobs
from exports.models import AuditEvent, ExportTask
from exports.tasks import record_audit, remove_task_files

log = logging.getLogger(__name__)

State = ExportTask.State
INTERVAL = timedelta(seconds=60)
PENDING_KEY = "psimexport:maintenance:pending"
MAX_ATTEMPTS = 2  # the first run and one re-queue after a lost worker
ORPHAN_JOB_GRACE = timedelta(minutes=5)


def run_maintenance(reschedule: bool = True, reindex: bool = True) -> dict:
    """One round of housekeeping; re-schedules itself a minute later (rq's scheduler runs it)."""
    try:
        report = {
            "expired": expire_finished_exports(),
            "recovered": recover_stuck_tasks(),
            "requeued": requeue_lost_jobs(),
            "orphans": remove_orphan_folders(),
        }
        if reindex:
            from exports.archive import index_all_cameras

            report["indexed"] = len(index_all_cameras())
        return report
    finally:
        if reschedule:
            schedule_maintenance(INTERVAL)


def schedule_maintenance(delay: timedelta = timedelta(0)):
    """Queue the next round unless one is already pending; returns the pending job.

    A Redis key names the pending job (ids are not reused: rq would mark a re-used id
    finished when the running round returns), so `start_maintenance` is idempotent.
    """
    import django_rq

    queue = django_rq.get_queue("default", commit_mode="auto")
    conn = queue.connection
    pending = conn.get(PENDING_KEY)
    if pending:
        job = Job.fetch(pending.decode(), connection=conn) if Job.exists(pending.decode(), connection=conn) else None
        if job is not None and job.get_status(refresh=False) in ("queued", "scheduled"):
            return job
    if delay:
        job = queue.enqueue_in(delay, run_maintenance, result_ttl=600, description="maintenance")
    else:
        job = queue.enqueue(run_maintenance, result_ttl=600, description="maintenance")
    conn.set(PENDING_KEY, job.id)
    return job


def expire_finished_exports(now=None) -> int:
    now = now or timezone.now()
    expired = 0
    due = ExportTask.objects.filter(state=State.READY, expires_at__lte=now).select_related(
        "camera"
    )
    for task in due:
        if ExportTask.objects.filter(id=task.id, state=State.READY).update(state=State.DELETED):
            remove_task_files(task)
            record_audit(task, AuditEvent.Action.EXPIRE, retention_hours=settings.PSIMEXPORT_RETENTION_HOURS)
            expired += 1
    return expired


def recover_stuck_tasks(now=None) -> int:
    """InProgress tasks whose job lost its worker: re-queue once, then fail with a message."""
    now = now or timezone.now()
    grace = now - timedelta(seconds=jobs.LEASE_SECONDS)
    stuck = ExportTask.objects.filter(state=State.IN_PROGRESS, started_at__lt=grace)
    if not stuck.exists():
        return 0
    conn = jobs.get_queue().connection
    recovered = 0
    for task in stuck.select_related("camera"):
        if jobs.lease_is_alive(task.id, conn):
            continue
        remove_task_files(task)
        if task.attempts < MAX_ATTEMPTS:
            changed = ExportTask.objects.filter(id=task.id, state=State.IN_PROGRESS).update(
                state=State.CREATED, percents=0, started_at=None
            )
            if changed:
                log.warning("task %s lost its worker; queued again", task.id)
                try:
                    jobs.enqueue_export(task)
                except jobs.QueueUnavailable:
                    _fail_lost(task, "the worker stopped and the job queue is unavailable")
        else:
            _fail_lost(
                task,
                f"the worker running this export stopped (killed or host restarted) "
                f"{task.attempts} times; giving up — retry the task",
            )
        recovered += 1
    return recovered


def _fail_lost(task, message: str) -> None:
    changed = ExportTask.objects.filter(id=task.id, state__in=ExportTask.ACTIVE_STATES).update(
        state=State.FAILED, error_message=message, finished_at=timezone.now()
    )
    if changed:
        record_audit(task, AuditEvent.Action.FAIL, error=message)


def requeue_lost_jobs(now=None) -> int:
    """Created tasks older than a few minutes whose rq job no longer exists: queue again."""
    now = now or timezone.now()
    waiting = ExportTask.objects.filter(
        state=State.CREATED, created_at__lt=now - ORPHAN_JOB_GRACE
    ).select_related("camera")
    if not waiting.exists():
        return 0
    conn = jobs.get_queue().connection
    requeued = 0
    for task in waiting:
        try:
            if Job.exists(str(task.id), connection=conn):
                continue
            jobs.enqueue_export(task)
            requeued += 1
        except (jobs.QueueUnavailable, redis.RedisError) as error:
            log.warning("cannot re-queue task %s: %s", task.id, error)
    return requeued


def remove_orphan_folders() -> int:
    """Folders under EXPORTS_DIR named like a task id whose task has no file to keep."""
    root = Path(settings.EXPORTS_DIR)
    if not root.is_dir():
        return 0
    keep = {State.READY, State.CREATED, State.IN_PROGRESS}
    removed = 0
    for entry in root.iterdir():
        try:
            task_id = uuid.UUID(entry.name)
        except ValueError:
            continue
        if not entry.is_dir():
            continue
        state = ExportTask.objects.filter(id=task_id).values_list("state", flat=True).first()
        if state not in keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
