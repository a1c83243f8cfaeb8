"""Export tasks as a service: create, cancel, delete, retry, list, describe. No HTTP here.

The API views and the pages both call these functions, so every rule (who may see what, what
is refused and with which status, what is audited) lives in one place.
"""

import fcntl
import logging
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from exports import signing
from exports.models import AuditEvent, Camera, ExportTask, Segment

log = logging.getLogger(__name__)

State = ExportTask.State
Action = AuditEvent.Action

QUEUE_UNAVAILABLE = "job queue unavailable"


class TaskRefused(Exception):
    """A request that cannot become a task, with the HTTP status that says why."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


class ApiAnonymousUser(AnonymousUser):
    """The caller of the JSON API when PSIMEXPORT_ALLOW_ANONYMOUS is on and no credentials came.

    It may export every enabled camera. The pages never see it (they always need a login).
    """

    is_api_anonymous = True

    def __str__(self):
        return "anonymous API caller"


# -- who may see what -------------------------------------------------------------------------


def exportable_cameras(user):
    """Cameras this caller may export (Camera.objects.restrict: the one rule)."""
    return Camera.objects.restrict(user)


def exportable_camera(user, camera_id: str):
    """The camera with this CameraId if this caller may export it, else None (one query)."""
    return next(iter(Camera.objects.restrict(user).filter(camera_id=camera_id).order_by()[:1]), None)


def visible_tasks(user):
    """Tasks this caller may see (ExportTask.objects.restrict: the one rule)."""
    return ExportTask.objects.restrict(user).select_related("camera", "requested_by")


def visible_task(user, task_id):
    """The task with this id if the caller may see it, else None: the task by its key, then
    the rule for its one camera (two small queries cost less than one nested query)."""
    found = ExportTask.objects.select_related("camera").filter(id=task_id).order_by()[:1]
    task = next(iter(found), None)
    if task is None or (getattr(user, "is_superuser", False) and user.is_active):
        return task
    if task.mosaic:  # every camera of its group (the one rule, ExportTask.objects.restrict)
        return task if ExportTask.objects.restrict(user).filter(id=task.id).exists() else None
    return task if Camera.objects.restrict(user).filter(pk=task.camera_id).exists() else None


# -- audit ------------------------------------------------------------------------------------


def record_audit(task, action, user=None, remote_addr=None, **detail) -> AuditEvent:
    """One line of the chain of custody; survives the task row."""
    real_user = user if getattr(user, "is_authenticated", False) else None
    if real_user is not None:
        username = real_user.get_username()
    elif getattr(user, "is_api_anonymous", False):
        username = "(anonymous API)"
    else:
        username = ""
    return AuditEvent.objects.create(
        task_id=task.id,
        camera_id=task.camera.camera_id,
        action=action,
        user=real_user,
        username=username,
        remote_addr=remote_addr or None,
        detail=detail,
    )


# -- create -----------------------------------------------------------------------------------


def create_export_task(
    *, camera, start, end, fmt, user, source, remote_addr=None, batch=None, case=None,
    max_file_size=None, mosaic="", options=None,
) -> ExportTask:
    """Resolve the range, check recording and disk, save the task and queue its job.

    `case`: optional case data, {"name", "comment", "keep"} (see CaseData).
    Raises TaskRefused: 403 a hold without the permission, 429 too many queued tasks, 400
    range too long, 404 nothing recorded, 507 disk, 503 queue down
    (the row is then kept as Failed "job queue unavailable" for the audit trail).
    """
    from exports.archive import last_recorded_frame
    from exports.media.options import STILL_WINDOW
    from exports.media.stills import FORMATS as STILL_FORMATS

    case = CaseData(**(case or {}))
    if case.keep:
        check_keep_permission(user)
    at_front = None  # (exports.jobs decides)
    if fmt in STILL_FORMATS:  # the frame on screen at From: its task covers [From, From + 1 ms)
        end = start + STILL_WINDOW
    if source != ExportTask.Source.COMMAND:
        # The quota's count also says whether this is the user's only active task, which
        # goes to the front of the queue (one query fewer per create).
        at_front = check_queue_quota(user) == 0
    # Refresh the index only when the range reaches past what it knows (the newest minute of
    # a recorder); maintenance re-indexes everything every minute anyway.
    index_behind = False
    if end is None or camera.last_recording is None or end > camera.last_recording:
        index_behind = not refresh_recent_segments(camera)
    requested_end = end
    if end is None:
        end = last_recorded_frame(camera)
        if index_behind and end is not None and end >= unindexed_after(camera):
            # Still recording, and the index could not catch up in time: up to now (the
            # job indexes the newest files before it exports).
            end = max(end, timezone.now())
        if end is None or end <= start:
            raise TaskRefused(
                f"camera {camera.camera_id} has no recording after {human_utc(start)}", 404
            )
    if end - start > timedelta(hours=settings.PSIMEXPORT_MAX_RANGE_HOURS):
        raise TaskRefused(
            f"the range is longer than the {settings.PSIMEXPORT_MAX_RANGE_HOURS} hours one "
            "export may cover; give a To or split it into several tasks",
            400,
        )
    check_options_fit(options, max_file_size, end - start)
    # While the index lags, a range past what it has seen is accepted: the job indexes the
    # newest files first and fails with "no recording" if there is none.
    if not has_recording(camera, start, end) and not (
        index_behind and end > unindexed_after(camera)
    ):
        raise TaskRefused(
            f"camera {camera.camera_id} has no recording between {human_utc(start)} and "
            f"{human_utc(end)}",
            404,
        )
    check_disk_space()

    task = ExportTask(
        camera=camera,
        batch=batch,
        requested_from=start,
        requested_to=requested_end,
        start=start,
        end=end,
        format=fmt,
        max_file_size=max_file_size,
        mosaic=mosaic,
        source=source,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        remote_addr=remote_addr or None,
        **case.task_fields(user),
        **(options or {}),  # picture options: ExportTask field values (option_fields.task_options)
    )
    return _save_and_enqueue(task, user, remote_addr, at_front)


def check_options_fit(options, max_file_size, length: timedelta) -> None:
    """Overlay and Speed run their own engine entry, which does not write parts yet: refuse
    them with MaxFileSize or a range longer than one part rather than drop them silently."""
    from exports.parts import part_span

    picture = [name for name, key in (("Overlay", "overlay"), ("Speed", "speed"))
               if (options or {}).get(key)]
    if not picture or not (max_file_size or length > part_span()):
        return
    hours = part_span().total_seconds() / 3600
    raise TaskRefused(
        f"{' and '.join(picture)} cannot be combined with MaxFileSize or with a range longer "
        f"than {hours:g} hours yet (an export in parts); export at most {hours:g} hours at a "
        "time without MaxFileSize",
        400,
    )


# The newest files of a growing camera are probed within this budget, off the request thread.
REFRESH_BUDGET_SECONDS = 1.0


def refresh_recent_segments(camera) -> bool:
    """Index the camera's newest files, waiting at most REFRESH_BUDGET_SECONDS; one refresh
    per camera at a time. Returns False when it did not finish in time: a slow or hung
    archive leaves the index as it was, lagging behind (the export job looks again). An
    archive that cannot be read at all leaves it as it was, too, but not lagging."""
    from exports import timebox
    from exports.archive import ArchiveError, index_camera

    def refresh():
        return index_camera(camera, recent_only=True)

    try:
        if connection.in_atomic_block:  # a thread could not see this transaction's rows
            refresh()
        else:
            timebox.within_budget(f"index-{camera.pk}", refresh, REFRESH_BUDGET_SECONDS)
    except timebox.NotDone as late:
        log.warning("camera %s: index not refreshed in time: %s", camera.camera_id, late)
        return False
    except ArchiveError as error:  # export what the index already knows
        log.warning("camera %s: cannot refresh the index: %s", camera.camera_id, error)
    return True


def unindexed_after(camera) -> datetime:
    """The instant after which the camera's index may lack footage its archive holds.

    The index saw the archive as it was when its last scan began, less one segment (a
    recorder may write a file only once it is complete, so a file appearing after the scan
    may hold up to one segment of older footage); if the camera was still recording then
    (its newest file growing), everything after its last indexed frame.
    """
    from exports.archive import last_recorded_frame

    seen = Camera.objects.filter(pk=camera.pk).values_list("indexed_at", "max_segment_seconds")
    indexed_at, longest = seen.first() or (None, 0.0)
    if indexed_at is None:
        return datetime.min.replace(tzinfo=UTC)
    after = indexed_at - timedelta(seconds=longest)
    newest = Segment.objects.filter(camera=camera).order_by("-start")
    if newest.values_list("complete", flat=True).first() is False:
        after = min(after, last_recorded_frame(camera) or after)
    return after


def _save_and_enqueue(task, user, remote_addr, at_front=None) -> ExportTask:
    from exports import jobs

    outcome = {}

    def enqueue():
        try:
            jobs.enqueue_export(task, at_front=at_front)
        except jobs.QueueUnavailable as error:
            outcome["error"] = error
            mark_queue_unavailable(task)

    with sqlite_write_turn(), transaction.atomic():
        task.save()
        record_audit(
            task, Action.CREATE, user, remote_addr,
            start=task.start.isoformat(), end=task.end.isoformat(), format=task.format,
            source=task.source, **CaseData.of(task).audit_detail(),
        )
    # Outside any outer transaction this queues the job now, after the commit (and after the
    # write turn is handed on); inside one (a batch of tasks, a test), the callback runs at
    # commit and marks the row itself if it fails.
    transaction.on_commit(enqueue)
    if "error" in outcome:
        raise TaskRefused(QUEUE_UNAVAILABLE, 503)
    return task


_write_turn_lock = threading.Lock()
_write_turn_files: dict[tuple[int, str], int] = {}  # (pid, database): a forked child opens its own


@contextmanager
def sqlite_write_turn():
    """Queue this process's SQLite writers on a lock file before BEGIN IMMEDIATE.

    SQLite lets one connection write at a time; the others poll for the lock with sleeps that
    grow to 100 ms (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms), so under load a short
    transaction could wait 50-600 ms for a lock that was free after 1 ms. Waiting on flock()
    instead wakes the next writer as soon as the previous one is done. Only around a short
    transaction of its own: inside an outer transaction (which may already hold SQLite's lock)
    this does nothing, as on other databases.
    """
    name = str(connection.settings_dict["NAME"])
    if (
        connection.vendor != "sqlite"
        or connection.in_atomic_block
        or name == ":memory:"
        or name.startswith("file:")
    ):
        yield
        return
    with _write_turn_lock:
        key = (os.getpid(), name)
        fd = _write_turn_files.get(key)
        if fd is None:
            fd = _write_turn_files[key] = os.open(f"{name}-writelock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def check_queue_quota(user) -> int:
    """How many tasks this caller has queued or running; TaskRefused(429) when that is
    PSIMEXPORT_MAX_QUEUED_PER_USER already. Anonymous API callers share one quota. A count,
    not a lock: two creates at the same instant may both pass, so the limit can be exceeded by
    the number of racing requests.
    """
    limit = settings.PSIMEXPORT_MAX_QUEUED_PER_USER
    active = ExportTask.objects.filter(state__in=ExportTask.ACTIVE_STATES)
    if getattr(user, "is_authenticated", False):
        active = active.filter(requested_by=user)
    else:
        active = active.filter(requested_by__isnull=True, source=ExportTask.Source.API)
    count = active.order_by()[:limit].count()
    if count >= limit:
        raise TaskRefused(
            f"you already have {limit} exports queued or running "
            "(PSIMEXPORT_MAX_QUEUED_PER_USER); wait for some to finish or cancel them",
            429,
        )
    return count


def has_recording(camera, start, end) -> bool:
    """Any indexed segment overlapping [start, end)? One bounded index range scan: a segment
    overlapping the range starts at most the camera's longest segment before it."""
    earliest = start - timedelta(seconds=camera.max_segment_seconds + 0.001)
    return Segment.objects.filter(
        camera=camera, start__gte=earliest, start__lt=end, end__gt=start
    ).exists()


def mark_queue_unavailable(task) -> None:
    ExportTask.objects.filter(id=task.id, state=State.CREATED).update(
        state=State.FAILED, error_message=QUEUE_UNAVAILABLE, finished_at=timezone.now()
    )
    task.state, task.error_message = State.FAILED, QUEUE_UNAVAILABLE
    record_audit(task, Action.FAIL, error=QUEUE_UNAVAILABLE)


def human_utc(moment: datetime) -> str:
    """A time as error messages say it: 2026-11-20 10:00:13 UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- disk -------------------------------------------------------------------------------------


def exports_dir() -> Path:
    return Path(settings.EXPORTS_DIR)


def exports_bytes_used() -> int:
    kept = ExportTask.objects.filter(state=State.READY).aggregate(total=Sum("size"))["total"]
    return kept or 0


def _held_note() -> str:
    """What of the budget legal holds take: they never expire, so only a release frees it."""
    held = ExportTask.objects.filter(state=State.READY, keep=True).aggregate(total=Sum("size"))
    return f" ({held['total']} bytes are under legal hold)" if held["total"] else ""


def free_bytes() -> int:
    path = exports_dir()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk_space() -> None:
    """Raise TaskRefused(507) when a new export would break the disk budget or free floor."""
    limit = settings.PSIMEXPORT_MAX_BYTES
    if limit is not None and exports_bytes_used() >= limit:
        raise TaskRefused(
            "not enough disk for exports: the export files already use the "
            f"{limit} bytes allowed (PSIMEXPORT_MAX_BYTES); delete finished exports or wait "
            f"for them to expire{_held_note()}",
            507,
        )
    if free_bytes() < settings.PSIMEXPORT_MIN_FREE_BYTES:
        raise TaskRefused(
            "not enough disk for exports: less than "
            f"{settings.PSIMEXPORT_MIN_FREE_BYTES} bytes free (PSIMEXPORT_MIN_FREE_BYTES)",
            507,
        )


def task_dir(task) -> Path:
    """The task's own folder under EXPORTS_DIR, named with its id (never from user input)."""
    return exports_dir() / str(task.id)


def remove_task_files(task) -> None:
    shutil.rmtree(task_dir(task), ignore_errors=True)


# -- case data and legal hold ----------------------------------------------------------------

KEEP_PERMISSION = "exports.keep_exporttask"


class CaseData:
    """An export's case data: the case or incident `name`, a `comment`, and the legal hold
    `keep` (exempt from retention expiry until released)."""

    def __init__(self, name: str = "", comment: str = "", keep: bool = False):
        self.name, self.comment, self.keep = name or "", comment or "", bool(keep)

    @classmethod
    def of(cls, task) -> "CaseData":
        return cls(task.case_name, task.case_comment, task.keep)

    def task_fields(self, user) -> dict:
        fields = {"case_name": self.name, "case_comment": self.comment, "keep": self.keep}
        if self.keep:
            fields.update(kept_by=_real_user(user), kept_at=timezone.now())
        return fields

    def audit_detail(self) -> dict:
        """Only what was given, so a plain PSIM task's create event looks as it always did."""
        detail = {"name": self.name, "comment": self.comment, "keep": self.keep}
        return {key: value for key, value in detail.items() if value}

    def __bool__(self):
        return bool(self.name or self.comment or self.keep)


def may_keep(user) -> bool:
    return bool(getattr(user, "is_active", False) and user.has_perm(KEEP_PERMISSION))


def check_keep_permission(user) -> None:
    if not may_keep(user):
        raise TaskRefused(
            "setting or releasing a legal hold (Keep) needs the permission "
            f"{KEEP_PERMISSION}; ask an administrator",
            403,
        )


def set_keep(task, keep: bool, user=None, remote_addr=None) -> ExportTask:
    """Set or release the legal hold of a task; audited when it changes. Idempotent.

    A released export's file is kept for a full retention period from the release (or until
    its original expiry, if later), so a release never deletes anything at once.
    TaskRefused: 403 without the permission, 409 for a deleted export (no file to keep).
    """
    check_keep_permission(user)
    now = timezone.now()
    with sqlite_write_turn(), transaction.atomic():
        task = ExportTask.objects.select_for_update(of=("self",)).select_related("camera").get(
            id=task.id
        )
        if task.keep == keep:
            return task
        if keep and task.state == State.DELETED:
            raise TaskRefused(
                f"export {task.id} was deleted: there is no file to keep; retry it first", 409
            )
        changes = {"keep": keep, "kept_by": _real_user(user) if keep else None,
                   "kept_at": now if keep else None}
        if not keep and task.expires_at is not None:
            retention = now + timedelta(hours=settings.PSIMEXPORT_RETENTION_HOURS)
            changes["expires_at"] = max(task.expires_at, retention)
        ExportTask.objects.filter(id=task.id).update(**changes)
        detail = {"expires": changes["expires_at"].isoformat()} if "expires_at" in changes else {}
        record_audit(task, Action.KEEP if keep else Action.RELEASE, user, remote_addr, **detail)
    task.refresh_from_db()
    return task


def _real_user(user):
    return user if getattr(user, "is_authenticated", False) else None


def refuse_if_kept(task, doing: str) -> None:
    if task.keep:
        raise TaskRefused(
            f"export {task.id} is under legal hold: it cannot be {doing} until the hold is "
            "released",
            409,
        )


# -- cancel, delete, retry --------------------------------------------------------------------


def cancel_task(task, user=None, remote_addr=None) -> ExportTask:
    """Stop a queued or running task. The running job notices and removes its temp files.
    TaskRefused(409) while it is under legal hold."""
    changed = ExportTask.objects.filter(
        id=task.id, state__in=ExportTask.ACTIVE_STATES, keep=False
    ).update(state=State.CANCELLED, finished_at=timezone.now(), error_message="cancelled")
    task.refresh_from_db()
    if not changed and task.is_active:
        refuse_if_kept(task, "cancelled")
    if changed:
        record_audit(task, Action.CANCEL, user, remote_addr)
        if task.started_at is None:
            remove_task_files(task)
            from exports import jobs

            jobs.forget_job(task.id)  # a queued job of a cancelled task is not dequeued
    return task


def delete_task(task, user=None, remote_addr=None) -> ExportTask:
    """Cancel if active, else remove the file: state Deleted. Idempotent.
    TaskRefused(409) while it is under legal hold."""
    if task.is_active:
        task = cancel_task(task, user, remote_addr)
        if task.state == State.CANCELLED:
            return task
    if task.state in (State.CANCELLED, State.DELETED):
        return task
    changed = ExportTask.objects.filter(id=task.id, state=task.state, keep=False).update(
        state=State.DELETED, percents=0 if task.state != State.READY else task.percents
    )
    task.refresh_from_db()
    if not changed and task.state != State.DELETED:
        refuse_if_kept(task, "deleted")
    if changed or task.state == State.DELETED:
        remove_task_files(task)
    if changed:
        record_audit(task, Action.DELETE, user, remote_addr)
    return task


# A deleted (or expired) export can be made again while the recording still exists.
RETRYABLE_STATES = (State.FAILED, State.CANCELLED, State.DELETED)


def retry_task(task, user=None, remote_addr=None) -> ExportTask:
    """Run a failed, cancelled or deleted task again from 0 %; TaskRefused if it cannot be."""
    if task.state not in RETRYABLE_STATES:
        raise TaskRefused(
            f"only a Failed, Cancelled or Deleted task can be retried, not {task.state}", 409
        )
    check_queue_quota(task.requested_by)
    check_disk_space()
    remove_task_files(task)
    changed = ExportTask.objects.filter(id=task.id, state=task.state).update(
        state=State.CREATED, percents=0, error_message="", started_at=None, finished_at=None,
        attempts=0, output_path="", size=None, sha256="", technique="", gaps=[], details={},
        expires_at=None, parts=[],
    )
    task.refresh_from_db()
    if not changed:
        return task
    record_audit(task, Action.RETRY, user, remote_addr)
    from exports import jobs

    try:
        jobs.enqueue_export(task)
    except jobs.QueueUnavailable:
        mark_queue_unavailable(task)
        raise TaskRefused(QUEUE_UNAVAILABLE, 503) from None
    return task


# -- describe ---------------------------------------------------------------------------------

# Signed links stay the same for this long, so polling clients see a stable Url.
LINK_STEP_SECONDS = 300
LINK_LIFETIME_SECONDS = 3600


def signed_download_url(task, request, part: int = 1) -> str | None:
    """Absolute link to the file (or one part of it) that works without credentials until
    `expires`; None until ready."""
    if task.state != State.READY or not task.output_path:
        return None
    now = int(time.time())
    expires = now - now % LINK_STEP_SECONDS + LINK_LIFETIME_SECONDS + LINK_STEP_SECONDS
    if task.expires_at is not None and not task.keep:  # a kept file does not expire
        expires = min(expires, int(task.expires_at.timestamp()))
    query = signing.signed_query(task, expires, part)
    return request.build_absolute_uri(reverse("api-download") + "?" + query)


_ABSOLUTE_DIRS = re.compile(r"(?<![\w.~/-])/(?:[^\s/'\":;,()]+/)+")


def public_error_message(task) -> str:
    """The task's error for API callers and pages: segment paths relative to the camera's
    archive, no other absolute server path (a folder layout is not the caller's business)."""
    message = task.error_message or ""
    if not message:
        return ""
    roots = {str(Path(task.camera.archive_path)), str(Path(task.camera.archive_path).resolve())}
    roots |= {str(Path(settings.EXPORTS_DIR)), str(Path(settings.DATA_DIR))}
    for root in sorted(roots, key=len, reverse=True):
        message = message.replace(root.rstrip("/") + "/", "")
    return _ABSOLUTE_DIRS.sub("", message)


def reported_percents(task) -> int:
    """`Percents` as a PSIM client reads it: 100 means "the file is there to download".

    So only a ready task says 100; a queued, running, failed or cancelled one says how far its
    run got, at most 99; a deleted (or expired) one says 0, as there is nothing left to fetch.
    """
    if task.state == State.READY:
        return 100
    if task.state == State.DELETED:
        return 0
    return min(int(task.percents), 99)


def task_status_dict(task, request) -> dict:
    """The PSIM status JSON of a task (PackageUrl: the evidence package, added to PSIM's)."""
    from exports.forms import format_psim_time

    url = signed_download_url(task, request)
    status = {
        "Percents": reported_percents(task),
        "Url": url,
        "PackageUrl": url and url + "&package=1",
        "CameraId": task.camera.camera_id,
        "From": format_psim_time(task.start),
        "To": format_psim_time(task.end),
        "ArchiveTaskId": str(task.id),
        "ErrorMessage": public_error_message(task) or None,
        "State": task.state,
        **case_status_fields(task),
    }
    if task.mosaic:
        status["Mosaic"] = task.mosaic
    if task.max_file_size or task.parts:  # only for tasks that asked for, or got, parts
        status["Parts"] = status_parts(task, request)
    return status


def status_parts(task, request) -> list[dict]:
    """`Parts`: each file of a task exported in parts, the first being `Url`'s; empty until
    the task is ready."""
    if task.state != State.READY:
        return []
    return [
        {
            "Url": signed_download_url(task, request, number),
            "From": part["from"],
            "To": part["to"],
            "Bytes": part["bytes"],
        }
        for number, part in enumerate(task.parts or [], start=1)
    ]


def case_status_fields(task) -> dict:
    """`Name`, `Comment`, `Keep` for the status answer, only for a task that has case data
    or a hold: a plain PSIM task answers exactly PSIM's fields."""
    if not CaseData.of(task):
        return {}
    return {"Name": task.case_name or None, "Comment": task.case_comment or None, "Keep": task.keep}
