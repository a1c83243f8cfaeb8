"""The web pages: cameras with their timelines, the export form, task history and detail.

Thin views: permissions come from Camera.objects.restrict and tasks.visible_tasks, export
validation from ExportRequestForm and task changes from the service layer in exports/tasks.py —
the same code the JSON API runs, so pages and API cannot disagree.
"""

from __future__ import annotations

import io
import math
import re
import uuid
import zipfile
from datetime import date, datetime, timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from exports import archive, download, groups, tasks, thumbnails
from exports.auth import client_addr
from exports.forms import STILL_FORMATS
from exports.media.options import STILL_WINDOW
from exports.models import AuditEvent, Camera, ExportTask
from exports.option_cost import reencode_estimate
from exports.option_fields import task_options
from exports.page_forms import (
    ExportPageForm,
    PreferencesForm,
    TaskFilterForm,
    parse_page_day,
    to_local_input,
    user_zone,
)
from exports.timeline import build_timeline, day_window, last_day_window


def page(view):
    """Login required, no caching, and times rendered in the user's zone."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        zone = user_zone(request.user)
        timezone.activate(zone)
        try:
            return view(request, *args, **kwargs)
        finally:
            timezone.deactivate()

    return login_required(never_cache(wrapper))


def render_page(request, template, context, nav=None, status=200):
    zone = user_zone(request.user)
    context = {"nav": nav, "user_zone": zone, "user_zone_name": zone.key, **context}
    return render(request, template, context, status=status)


def visible_camera(user, camera_id) -> Camera:
    return get_object_or_404(Camera.objects.restrict(user), camera_id=camera_id)


# -- cameras ----------------------------------------------------------------------------------


@page
def cameras(request):
    zone = user_zone(request.user)
    now = timezone.now()
    day = parse_page_day(request.GET.get("day"))
    start, end = day_window(day, zone) if day else last_day_window(now)
    rows = []
    for camera in Camera.objects.restrict(request.user):
        coverage = archive.camera_coverage(camera)
        intervals = archive.recorded_intervals(camera, start, end)
        timeline = build_timeline(
            intervals, start, end, zone, now,
            first_recording=coverage["first"], live_edge=_live_edge(camera),
        )
        rows.append({"camera": camera, "coverage": coverage, "timeline": timeline})
    today = now.astimezone(zone).date()
    shown = day or today
    context = {
        "rows": rows,
        "day": day,
        "window_start": start,
        "window_end": end,
        "previous_day": date.fromordinal(shown.toordinal() - 1),
        "next_day": date.fromordinal(shown.toordinal() + 1) if shown < today else None,
        "today": today,
    }
    return render_page(request, "exports/cameras.html", context, nav="cameras")


def _live_edge(camera) -> timedelta:
    """How far behind now the index may lag while the camera is still recording: the segment
    being written is indexed when it is complete."""
    return timedelta(seconds=max(60.0, 2 * (camera.max_segment_seconds or 0)))


@login_required
def camera_thumbnail(request, camera_id):
    camera = visible_camera(request.user, camera_id)
    path = thumbnails.latest_thumbnail(camera)
    if path is None:
        raise Http404("No decodable recording yet.")
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    # The name changes with the newest segment, so a short private cache is safe.
    response["Cache-Control"] = "private, max-age=30"
    response["ETag"] = f'"{path.stem}"'
    return response


# -- preferences ------------------------------------------------------------------------------


@page
@require_http_methods(["GET", "POST"])
def preferences(request):
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            form.save(request.user)
            messages.success(request, f"Times are now shown in {form.cleaned_data['time_zone']}.")
            return redirect(_safe_next(request) or "cameras")
    else:
        form = PreferencesForm(initial={"time_zone": user_zone(request.user).key})
    return render_page(request, "exports/preferences.html", {"form": form, "now": datetime.now()})


def _safe_next(request):
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


# -- export form ------------------------------------------------------------------------------


@page
@require_http_methods(["GET", "POST"])
def export(request):
    zone = user_zone(request.user)
    if request.method == "GET":
        form = ExportPageForm(initial=_initial_from_query(request.GET, zone), user=request.user, zone=zone)
        return _render_export(request, form)
    if request.POST.get("quick"):
        initial = _quick_range(request.POST, zone)
        form = ExportPageForm(initial=initial, user=request.user, zone=zone)
        return _render_export(request, form)
    form = ExportPageForm(request.POST, user=request.user, zone=zone)
    if not form.is_valid() or request.POST.get("action") == "preview":
        return _render_export(request, form, preview=_preview(form))
    batch = uuid.uuid4() if len(form.requests) > 1 else None
    created = []
    if batch and form.requests[0]["end"] is None:  # one range for all: files stay aligned
        try:
            common = groups.common_end([c["camera"] for c in form.requests], form.requests[0]["start"])
        except tasks.TaskRefused:
            common = None  # each camera is refused with its own message below
        for cleaned in form.requests:
            cleaned["end"] = common
    for cleaned in form.requests:
        try:
            created.append(
                tasks.create_export_task(
                    camera=cleaned["camera"], start=cleaned["start"], end=cleaned["end"],
                    fmt=cleaned["format"], user=request.user, source=ExportTask.Source.PAGE,
                    remote_addr=client_addr(request), batch=batch, case=cleaned["case"],
                    max_file_size=cleaned.get("max_file_size"),
                    options=task_options(cleaned),
                )
            )
        except tasks.TaskRefused as refused:
            message = _refusal_for_page(refused, cleaned, zone)
            name = cleaned["camera"].display_name
            form.add_error(None, f"{name}: {message}" if batch else message)
    if batch and form.cleaned_data.get("mosaic") and len(created) == len(form.requests):
        _add_mosaic(request, form, created, batch)
    if not created:
        return _render_export(request, form, preview=_preview(form))
    if form.non_field_errors():
        messages.error(request, " ".join(form.non_field_errors()))
    noun = "export" if len(created) == 1 else f"{len(created)} exports"
    messages.success(request, f"Queued {noun}. Progress updates below.")
    target = reverse("tasks")
    return redirect(f"{target}?batch={batch}" if batch else target)


def _add_mosaic(request, form, created, batch) -> None:
    """The batch's mosaic task (exports/groups.py), after its cameras' tasks."""
    first, grid = created[0], form.cleaned_data["mosaic"]
    try:
        groups.check_mosaic(grid, len(created), first.end - first.start)
        created.append(
            tasks.create_export_task(
                camera=first.camera, start=first.start, end=first.end, fmt=first.format,
                user=request.user, source=ExportTask.Source.PAGE,
                remote_addr=client_addr(request), batch=batch, mosaic=grid,
            )
        )
    except tasks.TaskRefused as refused:
        form.add_error(None, _sentence(refused.message))


def _refusal_for_page(refused, cleaned, zone) -> str:
    """The service's refusal, with its times in the zone the user typed them in.

    The service words "no recording" (404) in UTC, as the API answers; a page user typed local
    times, so the page says it again in their zone.
    """
    if refused.status != 404:
        return _sentence(refused.message)
    start, end = cleaned["start"], cleaned["end"]
    where = zone.key
    if end is None:
        return f"No recording after {start.astimezone(zone):%Y-%m-%d %H:%M:%S} {where}."
    return (
        f"No recording between {start.astimezone(zone):%Y-%m-%d %H:%M:%S} and "
        f"{end.astimezone(zone):%Y-%m-%d %H:%M:%S} {where}."
    )


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def _render_export(request, form, preview=None):
    context = {
        "form": form,
        "preview": preview,
        "quick_minutes": ExportPageForm.QUICK_MINUTES,
        "start_utc": _lenient_time(form["start"].value(), form.zone),
        "end_utc": _lenient_time(form["end"].value(), form.zone),
    }
    return render_page(request, "exports/export.html", context, nav="export")


def _initial_from_query(query, zone) -> dict:
    """Prefill from links: ?camera=1&camera=2&from=…&to=… (instants or local times)."""
    initial = {"around": 5}
    cameras = query.getlist("camera")
    if cameras:
        initial["camera"] = cameras
    for key, field in (("from", "start"), ("to", "end"), ("start", "start"), ("end", "end")):
        moment = _lenient_time(query.get(key), zone)
        if moment:
            initial[field] = moment
    if query.get("format"):
        initial["format"] = query["format"]
    return initial


def _lenient_time(value, zone):
    from exports.page_forms import LocalDateTimeField

    if isinstance(value, datetime):
        return value
    if not value or not isinstance(value, str):
        return None
    try:
        return LocalDateTimeField(zone=zone, required=False).clean(value)
    except ValidationError:
        return None


def _quick_range(post, zone) -> dict:
    """Server side of the quick-range buttons: last N minutes, or From ± N."""
    initial = {
        "camera": post.getlist("camera"),
        "format": post.get("format"),
        "around": post.get("around") or 5,
        "start": post.get("start"),
        "end": post.get("end"),
        # The picture options stay as the user set them.
        **{name: post.get(name) for name in ("overlay_position", "overlay_zone", "speed")},
        "overlay": bool(post.get("overlay")),
        "overlay_ms": bool(post.get("overlay_ms")),
    }
    quick = post["quick"]
    now = timezone.now().replace(microsecond=0)
    last = re.fullmatch(r"last-([0-9]{1,6})", quick)  # ASCII digits only ("²" is a digit too)
    if last and 0 < int(last.group(1)) <= MAX_QUICK_MINUTES:
        initial["start"] = now - timedelta(minutes=int(last.group(1)))
        initial["end"] = now
    elif quick == "around":
        center = _lenient_time(post.get("start"), zone) or now
        minutes = post.get("around") or "5"
        minutes = int(minutes) if re.fullmatch(r"[0-9]{1,4}", minutes) else 5
        minutes = min(minutes, MAX_QUICK_MINUTES)
        initial["start"] = center - timedelta(minutes=minutes)
        initial["end"] = center + timedelta(minutes=minutes)
    return initial


# Quick ranges never reach further than a week (odd values are ignored, not a crash).
MAX_QUICK_MINUTES = 7 * 24 * 60


def _preview(form) -> dict | None:
    """What the valid requests of `form` would cover: recorded time, gaps, estimated size."""
    if not form.is_valid():
        return None
    rows = []
    for cleaned in form.requests:
        camera, start, end = cleaned["camera"], cleaned["start"], cleaned["end"]
        still = cleaned["format"] in STILL_FORMATS
        if still:
            end = start + STILL_WINDOW
        if end is None:
            end = archive.last_recorded_frame(camera)
            if end is None or end <= start:
                rows.append({"camera": camera, "start": start, "end": None, "empty": True})
                continue
        coverage = archive.segments_covering(camera, start, end)
        rows.append(
            {
                "camera": camera,
                "start": start,
                "end": end,
                "seconds": (end - start).total_seconds(),
                "recorded_seconds": coverage.recorded_seconds,
                "gaps": coverage.gaps,
                "segments": len(coverage.segments),
                "estimated_bytes": _estimated_bytes(coverage.segments, start, end),
                "parts": _estimated_parts(cleaned, start, end, coverage.segments),
                "empty": not coverage.segments,
                "still": still,
                "cost": reencode_estimate(
                    coverage.segments, start, end, overlay=cleaned.get("overlay"),
                    speed=cleaned.get("speed"), still=still,
                ),
            }
        )
    return {"rows": rows, "format": form.cleaned_data["format"]}


def _estimated_parts(cleaned, start, end, segments) -> int:
    """How many files a MaxFileSize or a range longer than one part will make, roughly."""
    from exports.parts import part_span

    by_time = math.ceil((end - start) / part_span())
    limit = cleaned.get("max_file_size")
    by_size = math.ceil(_estimated_bytes(segments, start, end) / limit) if limit else 1
    return max(by_time, by_size, 1)


def _estimated_bytes(segments, start, end) -> int:
    """Sum of each segment's size times the share of it inside the range (stream copy)."""
    total = 0.0
    for segment in segments:
        length = (segment.end - segment.start).total_seconds()
        if length <= 0:
            continue
        inside = (min(segment.end, end) - max(segment.start, start)).total_seconds()
        total += segment.size * max(0.0, inside) / length
    return int(total)


@page
def export_preview(request):
    """The preview fragment the export form fetches while the user types."""
    zone = user_zone(request.user)
    form = ExportPageForm(request.GET, user=request.user, zone=zone)
    context = {"form": form, "preview": _preview(form), "user_zone_name": zone.key, "fragment": True}
    return render(request, "exports/_preview.html", context)


# -- task history -----------------------------------------------------------------------------

PAGE_SIZE = 50
MAX_POLLED_IDS = 200


@page
def task_list(request):
    zone = user_zone(request.user)
    form = TaskFilterForm(request.GET or None, user=request.user)
    task_rows = tasks.visible_tasks(request.user)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if data["camera"]:
            task_rows = task_rows.filter(camera=data["camera"])
        if data["state"]:
            task_rows = task_rows.filter(state=data["state"])
        if data["day"]:
            first, last = day_window(data["day"], zone)
            task_rows = task_rows.filter(created_at__gte=first, created_at__lt=last)
        task_rows = _case_filter(task_rows, data["q"], data["kept"])
    batch = _parse_uuid(request.GET.get("batch"))
    if batch:
        task_rows = task_rows.filter(batch=batch)
    paginator = Paginator(task_rows.order_by("-created_at", "-id"), PAGE_SIZE)
    page_obj = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page_obj": page_obj,
        "rows": _group_batches(request.user, list(page_obj.object_list)),
        "query": query.urlencode(),
        "batch": batch,
        "next_url": request.get_full_path(),
        "retryable": tasks.RETRYABLE_STATES,
    }
    return render_page(request, "exports/tasks.html", context, nav="tasks")


def _case_filter(task_rows, text: str, kept: bool):
    """The history's case search: every word in the case name or comment (any case)."""
    for word in text.split():
        task_rows = task_rows.filter(Q(case_name__icontains=word) | Q(case_comment__icontains=word))
    return task_rows.filter(keep=True) if kept else task_rows


def batch_summaries(user, batch_ids) -> dict:
    """{batch: {"batch", "total", "ready"}} counting only the tasks `user` may see, so the
    header and its zip link never speak of cameras the user cannot export."""
    if not batch_ids:
        return {}
    counts = (
        tasks.visible_tasks(user)
        .filter(batch__in=batch_ids)
        .order_by()
        .values("batch")
        .annotate(total=Count("id"), ready=Count("id", filter=Q(state=ExportTask.State.READY)))
    )
    return {row["batch"]: row for row in counts}


def _group_batches(user, page_tasks):
    """Rows for the table, with a header row before the first task of each batch."""
    summary = batch_summaries(user, {t.batch for t in page_tasks if t.batch})
    rows, seen = [], set()
    for task in page_tasks:
        head = None
        if task.batch and task.batch not in seen:
            seen.add(task.batch)
            head = summary.get(task.batch)
        rows.append({"task": task, "batch_head": head})
    return rows


def _parse_uuid(value):
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


@page
def task_progress(request):
    """JSON for the live progress bars: state and percents of the asked ids; a finished task's
    row comes back as HTML so its actions (download, retry…) appear without a reload."""
    ids = [i for i in (_parse_uuid(v) for v in request.GET.getlist("id")[:MAX_POLLED_IDS]) if i]
    next_url = request.GET.get("next") or reverse("tasks")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("tasks")
    result, batch_ids = [], set()
    for task in tasks.visible_tasks(request.user).filter(id__in=ids):
        if task.batch:
            batch_ids.add(task.batch)
        item = {
            "id": str(task.id),
            "state": task.state,
            "percents": tasks.reported_percents(task),
            "active": task.is_active,
            "label": task.get_state_display(),
        }
        if not task.is_active:
            item["html"] = render_to_string(
                "exports/_task_row.html",
                {"task": task, "next_url": next_url, "retryable": tasks.RETRYABLE_STATES},
                request=request,
            )
        result.append(item)
    # The batch headers of the polled tasks, so "Batch of 2 · 1 ready" and its zip link follow.
    batches = [
        {
            "id": str(batch),
            "html": render_to_string("exports/_batch_head.html", {"head": head}, request=request),
        }
        for batch, head in batch_summaries(request.user, batch_ids).items()
    ]
    return JsonResponse({"tasks": result, "batches": batches})


@page
def task_detail(request, task_id):
    task = get_object_or_404(tasks.visible_tasks(request.user), id=task_id)
    events = AuditEvent.objects.filter(task_id=task.id).select_related("user")[:100]
    # Every run writes a "start" event; task.attempts counts only the current try (the
    # stuck-task recovery's budget) and starts again at 0 on retry.
    runs = AuditEvent.objects.filter(task_id=task.id, action=AuditEvent.Action.START).count()
    context = {
        "task": task,
        "runs": max(runs, task.attempts),
        "retries": AuditEvent.objects.filter(task_id=task.id, action=AuditEvent.Action.RETRY).count(),
        "percents": tasks.reported_percents(task),
        "player_url": f"{reverse('task-play', args=[task.id])}?v={uuid.uuid4().hex}",
        "events": events if request.user.is_staff else None,
        "gaps": _gaps_for_display(task.gaps),
        "duration": (task.end - task.start).total_seconds(),
        "run_seconds": (task.finished_at - task.started_at).total_seconds()
        if task.started_at and task.finished_at
        else None,
        "next_url": request.get_full_path(),
        "retryable": tasks.RETRYABLE_STATES,
        "local_start": to_local_input(task.start, user_zone(request.user)),
        "may_keep": tasks.may_keep(request.user),
        "retention_hours": settings.PSIMEXPORT_RETENTION_HOURS,
        "parts": _parts_for_display(task.parts),
    }
    return render_page(request, "exports/task_detail.html", context, nav="tasks")


@page
@require_POST
def task_keep(request, task_id):
    """Set (keep=1) or release (keep=0) the legal hold; needs exports.keep_exporttask."""
    task = get_object_or_404(tasks.visible_tasks(request.user), id=task_id)
    keep = request.POST.get("keep") == "1"
    try:
        task = tasks.set_keep(task, keep, request.user, client_addr(request))
    except tasks.TaskRefused as refused:
        if refused.status == 403:
            raise PermissionDenied(refused.message) from None
        messages.error(request, _sentence(refused.message))
    else:
        done = "is now under legal hold" if task.keep else "is released from legal hold"
        messages.success(request, f"Export {str(task.id)[:8]} {done}.")
    return redirect(_safe_next(request) or reverse("task-detail", args=[task.id]))


def _parts_for_display(parts):
    """The task's parts (exports/parts.py) with their ranges as datetimes."""
    from exports.forms import parse_psim_time

    return [
        {**part, "number": number, "start": parse_psim_time(part["from"]),
         "end": parse_psim_time(part["to"])}
        for number, part in enumerate(parts or [], start=1)
    ]


def _gaps_for_display(gaps):
    """Task gaps as the job stores them ({"From": …, "To": …}) as datetimes."""
    from exports.forms import parse_psim_time

    shown = []
    for gap in gaps or []:
        try:
            if isinstance(gap, dict):
                keys = {key.lower(): value for key, value in gap.items()}
                start, end = keys["from"], keys["to"]
            else:
                start, end = gap
            start, end = parse_psim_time(start), parse_psim_time(end)
        except (ValueError, TypeError, KeyError):
            continue
        shown.append({"start": start, "end": end, "seconds": (end - start).total_seconds()})
    return shown


# Cancel and delete stop or remove evidence: a POST without `confirmed` shows what would
# happen and asks again (pages.js asks with a dialog instead and sends `confirmed` at once).
CONFIRM = {
    "cancel_task": ("Cancel this export?", "It stops and its partial file is removed. You can retry it later."),
    "delete_task": ("Delete this export?", "Its file is removed for everyone who can see it. The audit trail keeps the record."),
}


def _task_action(service):
    @page
    @require_POST
    def view(request, task_id):
        task = get_object_or_404(tasks.visible_tasks(request.user), id=task_id)
        question = CONFIRM.get(service.__name__)
        if question and not request.POST.get("confirmed"):
            context = {
                "task": task, "question": question[0], "consequence": question[1],
                "action": request.path, "next_url": _safe_next(request) or "",
                "back_url": _safe_next(request) or reverse("task-detail", args=[task.id]),
            }
            return render_page(request, "exports/confirm.html", context, nav="tasks")
        try:
            task = service(task, request.user, client_addr(request))
        except tasks.TaskRefused as refused:
            messages.error(request, refused.message)
        else:
            messages.success(request, f"Export {str(task.id)[:8]} is now {task.get_state_display()}.")
        return redirect(_safe_next(request) or reverse("task-detail", args=[task.id]))

    view.__name__ = f"task_{service.__name__}"
    return view


task_cancel = _task_action(tasks.cancel_task)
task_delete = _task_action(tasks.delete_task)
task_retry = _task_action(tasks.retry_task)


@login_required
def task_download(request, task_id):
    """The file, through the API's download code (Range, ETag) but behind the page login."""
    task = get_object_or_404(tasks.visible_tasks(request.user), id=task_id)
    try:
        part = download.part_number(request.GET.get("part"))
        response = download.file_response(request, task, part)
    except download.DownloadUnavailable as unavailable:
        return render_page(
            request, "exports/unavailable.html", {"task": task, "message": unavailable.message},
            status=unavailable.status,
        )
    # A <video> asks for many ranges; only a request from the first byte is a download.
    if response.status_code in (200, 206) and request.method == "GET" and _from_first_byte(request):
        tasks.record_audit(
            task, AuditEvent.Action.DOWNLOAD, request.user, client_addr(request),
            **({"part": part} if part != 1 else {}),
        )
    return response


@login_required
def task_parts_zip(request, task_id):
    """Every part of a task exported in parts, as one zip streamed while it is written."""
    task = get_object_or_404(tasks.visible_tasks(request.user), id=task_id)
    try:
        paths = download.task_file_paths(task)
    except download.DownloadUnavailable as unavailable:
        return render_page(
            request, "exports/unavailable.html", {"task": task, "message": unavailable.message},
            status=unavailable.status,
        )
    tasks.record_audit(
        task, AuditEvent.Action.DOWNLOAD, request.user, client_addr(request), via="parts zip"
    )
    return zip_response(paths, f"export-{task.id}.zip")


@login_required
def task_play(request, task_id):
    """The file for the detail page's <video>: a view, not a download.

    A player asks for many ranges, and again for the start after a seek, so the view is
    audited once per page load: the page gives each player its own `v` token.
    """
    task = get_object_or_404(tasks.visible_tasks(request.user), id=task_id)
    try:
        response = download.file_response(request, task)
    except download.DownloadUnavailable as unavailable:
        return JsonResponse({"ErrorMessage": unavailable.message}, status=unavailable.status)
    response["Content-Disposition"] = "inline"
    token = str(request.GET.get("v", ""))[:64]
    if response.status_code in (200, 206) and request.method == "GET":
        seen = AuditEvent.objects.filter(
            task_id=task.id, action=AuditEvent.Action.VIEW, detail__player=token
        )
        if not seen.exists():
            tasks.record_audit(
                task, AuditEvent.Action.VIEW, request.user, client_addr(request), player=token
            )
    return response


def _from_first_byte(request) -> bool:
    header = request.META.get("HTTP_RANGE", "")
    return not header or header.replace(" ", "").lower().startswith("bytes=0-")


@login_required
def batch_zip(request, batch_id):
    """All finished files of a batch as one zip, streamed while it is written."""
    batch_tasks = (
        tasks.visible_tasks(request.user)
        .filter(batch=batch_id, state=ExportTask.State.READY)
        .order_by("camera__camera_id", "start")
    )
    files = []
    for task in batch_tasks:
        try:  # every part of a task exported in parts
            paths = download.task_file_paths(task)
        except download.DownloadUnavailable:
            continue
        files.append((task, paths))
    if not files:
        raise Http404("No finished export in this batch.")
    for task, _paths in files:
        tasks.record_audit(
            task, AuditEvent.Action.DOWNLOAD, request.user, client_addr(request), via="zip"
        )
    return zip_response([p for _task, paths in files for p in paths], f"batch-{batch_id}.zip")


def zip_response(paths, name: str):
    response = StreamingHttpResponse(stream_zip(paths), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    return response


# -- streamed zip -----------------------------------------------------------------------------


class _ChunkSink(io.RawIOBase):
    """A write-only, non-seekable file whose bytes are collected for a generator to yield.

    zipfile sees that it cannot seek and writes data descriptors after each member, so the
    archive is produced front to back without ever holding more than one chunk.
    """

    def __init__(self):
        self.chunks = []
        self.position = 0

    def writable(self):
        return True

    def write(self, data):
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self):
        return self.position

    def drain(self):
        chunks, self.chunks = self.chunks, []
        return chunks


ZIP_CHUNK = 1024 * 1024


def stream_zip(paths):
    """Yield a ZIP_STORED archive of `paths` (stored by file name), chunk by chunk."""
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive_zip:
        for path in paths:
            info = zipfile.ZipInfo.from_file(path, arcname=path.name)
            info.compress_type = zipfile.ZIP_STORED
            with open(path, "rb") as source, archive_zip.open(info, "w", force_zip64=True) as member:
                while chunk := source.read(ZIP_CHUNK):
                    member.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()
