"""Task groups: one request for several cameras and one range (API `CameraIds`).

A group is the existing batch (`ExportTask.batch`, what the export form makes when several
cameras are ticked): one task per camera, all with the same resolved range, so every file
starts with the frame on screen at `From` and ends with the one on screen just before `To`.
The group's id is the batch id; the API answers it as `ArchiveTaskId`, and
`/getarchivetaskstatus`, `/download` (a zip of every file) and `/deletearchivetask` accept it
where they accept a task id. A group is visible only to a caller who may see every one of
its tasks (anything else is a 404, as for a task).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, timedelta
from urllib.parse import urlencode

from django.db import transaction
from django.urls import reverse
from django.utils.crypto import constant_time_compare

from exports import signing, tasks
from exports.models import ExportTask

State = ExportTask.State
# More would make a zip nobody reviews, and a request nobody can check in one glance.
MAX_CAMERAS = 16
# A mosaic is re-encoded frame by frame: an evidence clip, not a day.
MOSAIC_MAX_HOURS = 1


def create_group(
    *, cameras, start, end, fmt, user, source, remote_addr=None, max_file_size=None, mosaic="",
    case=None, options=None,
):
    """One task per camera for the same range, as one batch, and with `mosaic` ("2x2",
    "3x3") one more task making the mosaic of them; all or none (TaskRefused). `case`
    (name, comment, keep) goes to every task, the mosaic's too.

    `end` None: up to the last recorded frame of whichever camera recorded last, so the files
    still share one range.
    """
    end = end or common_end(cameras, start)
    if mosaic:
        check_mosaic(mosaic, len(cameras), end - start)
    batch = uuid.uuid4()
    common = dict(start=start, end=end, fmt=fmt, user=user, source=source,
                  remote_addr=remote_addr, batch=batch, case=case)
    with transaction.atomic():  # a refusal for one camera creates none
        created = [
            tasks.create_export_task(
                camera=camera, max_file_size=max_file_size, options=options, **common
            )
            for camera in cameras
        ]
        if mosaic:
            created.append(tasks.create_export_task(camera=cameras[0], mosaic=mosaic, **common))
    return batch, created


def refuse_if_any_kept(members) -> None:
    """TaskRefused(409) naming the first task under legal hold, before any is touched."""
    for task in members:
        tasks.refuse_if_kept(task, "deleted")


def check_mosaic(grid: str, cameras: int, length) -> None:
    from exports.media.mosaic import GRIDS

    side = GRIDS.get(grid)
    if side is None:
        raise tasks.TaskRefused(f"Mosaic {str(grid)[:10]!r} is not one of {', '.join(GRIDS)}", 400)
    if cameras > side * side:
        raise tasks.TaskRefused(f"Mosaic {grid} holds at most {side * side} cameras, not {cameras}", 400)
    if length > timedelta(hours=MOSAIC_MAX_HOURS):
        raise tasks.TaskRefused(
            f"Mosaic covers at most {MOSAIC_MAX_HOURS} hour (each frame is re-encoded); "
            "shorten the range or leave Mosaic out", 400,
        )


def mosaic_file_name(task) -> str:
    """mosaic-2x2_2026-11-20T10-00-13Z_2026-11-20T10-00-41Z.mp4"""
    stamps = [moment.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%SZ") for moment in (task.start, task.end)]
    return f"mosaic-{task.mosaic}_{stamps[0]}_{stamps[1]}.{task.format}"


def export_mosaic(task, out_path, reporter):
    """The job of a mosaic task: the group's other cameras over the task's range."""
    from exports.archive import segment_abspath, segments_covering
    from exports.jobs import with_db_retry
    from exports.media.engine import SourceSegment
    from exports.media.mosaic import MosaicInput
    from exports.media.mosaic import export_mosaic as write_mosaic

    members = (
        ExportTask.objects.filter(batch=task.batch, mosaic="").exclude(id=task.id)
        .select_related("camera").order_by("created_at")
    )
    inputs = []
    for member in with_db_retry(list, members):
        coverage = with_db_retry(segments_covering, member.camera, task.start, task.end)
        inputs.append(MosaicInput(member.camera.display_name, [
            SourceSegment(segment_abspath(member.camera, seg), seg.start, seg.end)
            for seg in coverage.segments
        ]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_mosaic(
        inputs, task.start, task.end, task.mosaic, task.format, out_path,
        progress=reporter.progress, cancelled=reporter.cancelled,
    )


def common_end(cameras, start):
    """The end of a range left open for several cameras: the last recorded frame of whichever
    camera recorded last (TaskRefused 404 when none recorded after `start`)."""
    from exports.archive import last_recorded_frame

    for camera in cameras:
        tasks.refresh_recent_segments(camera)
    ends = [last_recorded_frame(camera) for camera in cameras]
    ends = [moment for moment in ends if moment is not None and moment > start]
    if not ends:
        names = ", ".join(camera.camera_id for camera in cameras)
        raise tasks.TaskRefused(
            f"cameras {names} have no recording after {start:%Y-%m-%d %H:%M:%S} UTC", 404
        )
    return max(ends)


def visible_group(user, group_id) -> list[ExportTask] | None:
    """The tasks of the group, if the caller may see every one of them; else None."""
    members = _members(group_id)
    if not members:
        return None
    visible = tasks.visible_tasks(user).filter(batch=group_id).count()
    return members if visible == len(members) else None


def _members(group_id) -> list[ExportTask]:
    """The group's tasks: its cameras' in the order asked, then the mosaic."""
    return list(
        ExportTask.objects.filter(batch=group_id).select_related("camera")
        .order_by("mosaic", "created_at")
    )


def group_state(members) -> str:
    """One state for the group: the common one; while any task is queued or running,
    InProgress once one has started (Created before); else the worst final state."""
    states = {task.state for task in members}
    if len(states) == 1:
        return next(iter(states))
    if states & set(ExportTask.ACTIVE_STATES):
        started = states & {State.IN_PROGRESS, State.READY}
        return State.IN_PROGRESS if started else State.CREATED
    for state in (State.FAILED, State.CANCELLED, State.DELETED):
        if state in states:
            return state
    return State.READY  # unreachable: a mix of final states always holds one of those


def zip_paths(members) -> list:
    """Every file of every task of a ready group (DownloadUnavailable otherwise)."""
    from exports.download import DownloadUnavailable, task_file_paths

    state = group_state(members)
    if state == State.DELETED:
        raise DownloadUnavailable("files of this group were deleted or have expired", 410)
    if state != State.READY:
        raise DownloadUnavailable(f"the group is not ready: it is {state}", 409)
    return [path for task in members for path in task_file_paths(task)]


def status_dict(group_id, members, request) -> dict:
    """The PSIM status of the group, with each camera's own status in `Tasks`."""
    from exports.forms import format_psim_time

    state = group_state(members)
    percents = [tasks.reported_percents(task) for task in members]
    errors = [
        f"{task.camera.camera_id}: {tasks.public_error_message(task)}"
        for task in members if tasks.public_error_message(task)
    ]
    return {
        "Percents": 100 if state == State.READY else min(99, sum(percents) // len(percents)),
        "Url": signed_url(group_id, members, request) if state == State.READY else None,
        "CameraId": members[0].camera.camera_id,
        "From": format_psim_time(members[0].start),
        "To": format_psim_time(members[0].end),
        "ArchiveTaskId": str(group_id),
        "ErrorMessage": "; ".join(errors) or None,
        "State": state,
        "CameraIds": [task.camera.camera_id for task in members if not task.mosaic],
        "Tasks": [tasks.task_status_dict(task, request) for task in members],
    }


def _generation(members) -> str:
    return "|".join(signing.file_generation(task) for task in members)


def signed_url(group_id, members, request) -> str:
    """The zip of every file of the group, valid without credentials for up to an hour."""
    now = int(time.time())
    expires = now - now % tasks.LINK_STEP_SECONDS + tasks.LINK_LIFETIME_SECONDS + tasks.LINK_STEP_SECONDS
    ends = [int(task.expires_at.timestamp()) for task in members if task.expires_at]
    expires = min([expires, *ends])
    digest = signing.signature(group_id, expires, _generation(members))
    query = urlencode({"file": str(group_id), "expires": expires, "signature": digest})
    return request.build_absolute_uri(reverse("api-download") + "?" + query)


def link_is_valid(group_id, members, expires, given) -> bool:
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return False
    if not isinstance(given, str) or expires < time.time():
        return False
    expected = signing.signature(group_id, expires, _generation(members))
    return constant_time_compare(expected, given)


def group_by_signed_link(raw_id, expires, given) -> tuple[uuid.UUID, list[ExportTask]] | None:
    try:
        group_id = uuid.UUID(str(raw_id or "").strip())
    except ValueError:
        return None
    members = _members(group_id)
    if members and link_is_valid(group_id, members, expires, given):
        return group_id, members
    return None
