"""The PSIM JSON API: thin views (parse → form/service → JsonResponse).

Every answer is JSON, errors included, in the contract's shape; nothing a client sends can
produce an HTML page or a 500.
"""

import functools
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

from django.core.exceptions import SuspiciousOperation
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from exports import auth, groups, signing, tasks, throttle
from exports.download import DownloadUnavailable, download_response, part_number
from exports.forms import ExportRequestForm, format_psim_time, parse_psim_time
from exports.models import AuditEvent, ExportTask
from exports.option_fields import API_OPTION_FIELDS, task_options

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    def __init__(self, message: str, status: int, **fields):
        super().__init__(message)
        self.message = message
        self.status = status
        self.fields = fields


def error(message: str, status: int, **fields) -> JsonResponse:
    """The contract's error shape: the six task fields, ArchiveTaskId null, State Failed."""
    body = {
        "CameraId": None,
        "From": None,
        "To": None,
        "ArchiveTaskId": None,
        "ErrorMessage": message,
        "State": "Failed",
    }
    body.update(fields)
    response = JsonResponse(body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = auth.CHALLENGE
    return response


def api_endpoint(methods=("GET",), authenticate=True):
    """Method check, authentication (request.api_user), and JSON for every failure."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
            if request.method not in allowed:
                response = error(
                    f"method {request.method} not allowed here; use {' or '.join(methods)}", 405
                )
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                if authenticate:
                    request.api_user = auth.authenticate_api_request(request)
                return view(request, *args, **kwargs)
            except auth.AuthenticationFailed as failure:
                return error(str(failure), 401)
            except throttle.Throttled as refused:
                response = error(str(refused), 429)
                response["Retry-After"] = str(refused.retry_after)
                return response
            except auth.CsrfFailed as failure:
                return error(str(failure), 403)
            except ApiError as failure:
                return error(failure.message, failure.status, **failure.fields)
            except Http404 as failure:
                return error(str(failure) or "not found", 404)
            except SuspiciousOperation as failure:
                return error(f"bad request: {failure}", 400)
            except Exception:
                log.exception("API %s %s failed", request.method, request.path)
                return error("internal error; the server log has the details", 500)

        return wrapper

    return decorate


# -- request parsing --------------------------------------------------------------------------


def read_json_object(request) -> dict:
    """The JSON object of the body, read with a 64 KiB limit (413 beyond)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError("invalid Content-Length", 400) from None
    if declared > MAX_BODY_BYTES:
        raise ApiError(f"request body larger than {MAX_BODY_BYTES // 1024} KiB", 413)
    raw = _read_body(request, declared)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(f"request body larger than {MAX_BODY_BYTES // 1024} KiB", 413)
    if not raw.strip():
        raise ApiError('empty body: send a JSON object such as {"CameraId": "1", ...}', 400)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as failure:
        raise ApiError(f"body is not valid JSON: {failure}", 400) from None
    except RecursionError:
        raise ApiError("body is not valid JSON: nested too deeply", 400) from None
    if not isinstance(data, dict):
        raise ApiError(f"body must be a JSON object, not a JSON {_json_type(data)}", 400)
    return data


def _read_body(request, declared: int) -> bytes:
    """Up to MAX_BODY_BYTES + 1 bytes of the body. A chunked body comes with no
    Content-Length (gunicorn de-chunks it), which Django reads as empty: read the WSGI input
    itself then. Only when chunked is declared, so a server that does not de-chunk cannot
    leave us waiting for a body that never ends."""
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if declared or not chunked:
        return request.read(MAX_BODY_BYTES + 1)
    stream = request.META["wsgi.input"]
    parts, size = [], 0
    while size <= MAX_BODY_BYTES:
        part = stream.read(MAX_BODY_BYTES + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _json_type(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def casefold_keys(data: dict) -> dict:
    """Field names match case-insensitively; two spellings of one field are refused."""
    folded = {}
    for key, value in data.items():
        lower = key.lower()
        if lower in folded:
            raise ApiError(f"field {key!r} given twice (field names ignore case)", 400)
        folded[lower] = value
    return folded


def query_param(request, name: str):
    """A query parameter, its name matched case-insensitively."""
    for key, value in request.GET.items():
        if key.lower() == name:
            return value
    return None


def _task_for(request, raw_id, *, missing_message: str):
    """A task the caller may see, or ApiError 400 (missing) / 404 (anything else)."""
    if raw_id is None or str(raw_id).strip() == "":
        raise ApiError(missing_message, 400)
    if not isinstance(raw_id, str):
        raise ApiError("ArchiveTaskId must be a string (a UUID)", 400)
    try:
        task_id = uuid.UUID(raw_id.strip())
    except ValueError:
        raise ApiError(f"no such task {raw_id[:60]!r}: not a task id", 404) from None
    task = tasks.visible_task(request.api_user, task_id)
    if task is None:
        raise ApiError(f"no such task {task_id}", 404, ArchiveTaskId=None)
    return task


# -- endpoints --------------------------------------------------------------------------------

_CREATE_FIELDS = {
    "cameraid": "camera", "from": "start", "to": "end", "format": "format",
    "maxfilesize": "max_file_size", **API_OPTION_FIELDS,
}
_CASE_FIELDS = {"name": "name", "comment": "comment", "keep": "keep"}  # optional, ours


@api_endpoint(methods=("POST",))
def create_archive_task(request):
    data = casefold_keys(read_json_object(request))
    if "cameraids" in data:
        return _create_group(request, data)
    if data.get("mosaic"):
        raise ApiError("Mosaic needs CameraIds: the cameras to lay out in the grid", 400)
    fields = {**_CREATE_FIELDS, **_CASE_FIELDS}
    form_data = {field: data.get(key) for key, field in fields.items() if key in data}
    echo = _echo(form_data)
    form = ExportRequestForm(form_data, user=request.api_user)
    if not form.is_valid():
        raise ApiError(form.error_message(), _refusal_status(form), **echo)
    cleaned = form.cleaned_data
    try:
        task = tasks.create_export_task(
            camera=cleaned["camera"],
            start=cleaned["start"],
            end=cleaned["end"],
            fmt=cleaned["format"],
            max_file_size=cleaned.get("max_file_size"),
            user=request.api_user,
            source=ExportTask.Source.API,
            remote_addr=auth.client_addr(request),
            case=form.case_data(),
            options=task_options(cleaned),
        )
    except tasks.TaskRefused as refusal:
        echo.update(CameraId=cleaned["camera"].camera_id, From=format_psim_time(cleaned["start"]))
        raise ApiError(refusal.message, refusal.status, **echo) from None
    return JsonResponse(
        {
            "CameraId": task.camera.camera_id,
            "From": format_psim_time(task.start),
            "To": format_psim_time(task.end),
            "ArchiveTaskId": str(task.id),
            "ErrorMessage": None,
            "State": task.state,
        }
    )


def _refusal_status(form) -> int:
    if form.camera_not_found:
        return 404
    return 403 if form.keep_forbidden else 400


def _create_group(request, data: dict):
    """CameraIds: one task per camera for one range, as a group (exports/groups.py). A
    CameraId given beside them comes first; a camera named twice counts once. Every camera
    must be one the caller may export (else 404, naming it) and have recording in the range;
    otherwise no task is created. Name, Comment and Keep go to every task, checked as for one
    (Keep without the permission: 403, no task)."""
    raw_ids = data.get("cameraids")
    if not isinstance(raw_ids, list) or not raw_ids:
        raise ApiError("CameraIds must be a non-empty array of camera ids", 400)
    if len(raw_ids) > groups.MAX_CAMERAS:
        raise ApiError(f"CameraIds may name at most {groups.MAX_CAMERAS} cameras", 400)
    mosaic = data.get("mosaic") or ""
    if not isinstance(mosaic, str):
        raise ApiError('Mosaic must be "2x2" or "3x3"', 400)
    single = [data["cameraid"]] if data.get("cameraid") not in (None, "") else []
    fields = {**_CREATE_FIELDS, **_CASE_FIELDS}
    common = {f: data.get(k) for k, f in fields.items() if k in data and k != "cameraid"}
    cameras, cleaned, case = [], {}, {}
    for position, raw in enumerate(single + raw_ids):
        form = ExportRequestForm({**common, "camera": raw}, user=request.api_user)
        if not form.is_valid():
            message = form.error_message()
            if position >= len(single):
                message = message.replace("CameraId ", "CameraIds ", 1)
            echo = _echo({**common, "camera": raw})
            raise ApiError(message, _refusal_status(form), **echo)
        cleaned, case = form.cleaned_data, form.case_data()
        if cleaned["camera"] not in cameras:
            cameras.append(cleaned["camera"])
    try:
        group_id, created = groups.create_group(
            cameras=cameras, start=cleaned["start"], end=cleaned["end"], fmt=cleaned["format"],
            max_file_size=cleaned.get("max_file_size"), user=request.api_user,
            source=ExportTask.Source.API, remote_addr=auth.client_addr(request),
            mosaic=mosaic.strip().lower(), case=case, options=task_options(cleaned),
        )
    except tasks.TaskRefused as refusal:
        echo = _echo({**common, "camera": cameras[0].camera_id})
        raise ApiError(refusal.message, refusal.status, **echo) from None
    return JsonResponse(
        {
            "CameraId": cameras[0].camera_id,
            "From": format_psim_time(created[0].start),
            "To": format_psim_time(created[0].end),
            "ArchiveTaskId": str(group_id),
            "ErrorMessage": None,
            "State": ExportTask.State.CREATED,
            "CameraIds": [camera.camera_id for camera in cameras],
            "Tasks": [
                {"CameraId": task.camera.camera_id, "ArchiveTaskId": str(task.id),
                 **({"Mosaic": task.mosaic} if task.mosaic else {})}
                for task in created
            ],
        }
    )


def _group_for(request, raw_id, not_a_task: ApiError):
    """(group id, tasks) for an id that named no task, if it names a group the caller may
    see; else `not_a_task` is raised."""
    try:
        group_id = uuid.UUID(str(raw_id).strip())
    except ValueError:
        raise not_a_task from None
    members = groups.visible_group(request.api_user, group_id)
    if members is None:
        raise not_a_task
    return group_id, members


def _echo(form_data: dict) -> dict:
    """What to answer in CameraId/From/To of a refused request: normalised where possible."""
    camera = form_data.get("camera")
    usable = isinstance(camera, (str, int)) and not isinstance(camera, bool)
    echo = {"CameraId": str(camera)[:64] if usable else None}
    for field, name in (("start", "From"), ("end", "To")):
        value = form_data.get(field)
        try:
            echo[name] = format_psim_time(parse_psim_time(value)) if value else None
        except ValueError:
            echo[name] = value[:64] if isinstance(value, str) else None
    return echo


@api_endpoint(methods=("GET",))
def get_archive_task_status(request):
    raw_id = query_param(request, "archivetaskid")
    try:
        task = _task_for(
            request, raw_id,
            missing_message="archivetaskid is required: /getarchivetaskstatus?archivetaskid=<id>",
        )
    except ApiError as not_a_task:
        if not_a_task.status != 404:
            raise
        group_id, members = _group_for(request, raw_id, not_a_task)
        return JsonResponse(groups.status_dict(group_id, members, request))
    return JsonResponse(tasks.task_status_dict(task, request))


@api_endpoint(methods=("POST",))
def delete_archive_task(request):
    raw_id = query_param(request, "archivetaskid")
    if raw_id is None:
        data = casefold_keys(read_json_object(request))
        raw_id = data.get("archivetaskid")
    try:
        task = _task_for(
            request, raw_id, missing_message='ArchiveTaskId is required: {"ArchiveTaskId": "<id>"}'
        )
    except ApiError as not_a_task:
        if not_a_task.status != 404:
            raise
        group_id, members = _group_for(request, raw_id, not_a_task)
        try:  # a task under legal hold keeps the whole group: all deleted or none
            groups.refuse_if_any_kept(members)
            members = [tasks.delete_task(t, request.api_user, auth.client_addr(request))
                       for t in members]
        except tasks.TaskRefused as refusal:
            raise _refused_on_group(group_id, members, request, refusal) from None
        return JsonResponse(groups.status_dict(group_id, members, request))
    try:
        task = tasks.delete_task(task, request.api_user, auth.client_addr(request))
    except tasks.TaskRefused as refusal:  # under legal hold
        raise _refused_on(task, request, refusal) from None
    return JsonResponse(tasks.task_status_dict(task, request))


@api_endpoint(methods=("POST",))
def keep_archive_task(request):
    """Set or release a task's legal hold: {"ArchiveTaskId": "<id>", "Keep": true|false}.
    Answers the status JSON; needs the permission exports.keep_exporttask (403 otherwise)."""
    data = casefold_keys(read_json_object(request))
    task = _task_for(
        request, data.get("archivetaskid"),
        missing_message='ArchiveTaskId is required: {"ArchiveTaskId": "<id>", "Keep": true}',
    )
    keep = data.get("keep")
    if not isinstance(keep, bool):
        raise _refused_on(task, request, tasks.TaskRefused("Keep is required: true or false", 400))
    try:
        task = tasks.set_keep(task, keep, request.api_user, auth.client_addr(request))
    except tasks.TaskRefused as refusal:
        raise _refused_on(task, request, refusal) from None
    return JsonResponse(tasks.task_status_dict(task, request))


_LINKS = ("Url", "PackageUrl", "Parts", "ErrorMessage")


def _refused_on(task, request, refusal) -> ApiError:
    """A refused change of a visible task: its status fields, the refusal's message."""
    status = tasks.task_status_dict(task, request)
    # No links in a refusal: the error answer carries the task's fields, not its files.
    fields = {k: v for k, v in status.items() if k not in _LINKS}
    return ApiError(refusal.message, refusal.status, **fields)


def _refused_on_group(group_id, members, request, refusal) -> ApiError:
    """The same for a group: its fields, with its tasks' (no links in either)."""
    status = groups.status_dict(group_id, members, request)
    status["Tasks"] = [{k: v for k, v in t.items() if k not in _LINKS} for t in status["Tasks"]]
    fields = {k: v for k, v in status.items() if k not in _LINKS}
    return ApiError(refusal.message, refusal.status, **fields)


@api_endpoint(methods=("GET",), authenticate=False)
def download(request):
    raw_id = query_param(request, "file")
    try:
        part = part_number(query_param(request, "part"))
    except DownloadUnavailable as unavailable:
        raise ApiError(unavailable.message, unavailable.status) from None
    if query_param(request, "signature") is not None:
        group = groups.group_by_signed_link(
            raw_id, query_param(request, "expires"), query_param(request, "signature")
        )
        if group is not None:
            return _group_zip(request, *group, user=None)
        task = _task_by_signed_link(request, raw_id, part)
        user = None
    else:
        request.api_user = auth.authenticate_api_request(request)
        try:
            task = _task_for(request, raw_id, missing_message="file is required: /download?file=<id>")
        except ApiError as not_a_task:
            if not_a_task.status != 404:
                raise
            return _group_zip(request, *_group_for(request, raw_id, not_a_task), user=request.api_user)
        user = request.api_user
    try:
        package = query_param(request, "package") not in (None, "", "0")
        response = download_response(request, task, package, part)
    except DownloadUnavailable as unavailable:
        raise ApiError(
            unavailable.message, unavailable.status,
            **{
                k: v
                for k, v in tasks.task_status_dict(task, request).items()
                if k not in ("Url", "PackageUrl", "ErrorMessage")
            },
        ) from None
    if response.status_code in (200, 206) and request.method == "GET" and _starts_at_zero(request):
        tasks.record_audit(
            task, AuditEvent.Action.DOWNLOAD, user, auth.client_addr(request),
            via="signed link" if user is None else "credentials",
            range=request.META.get("HTTP_RANGE", ""), **({"package": True} if package else {}),
            **({"part": part} if part != 1 else {}),
        )
    return response


def _group_zip(request, group_id, members, user):
    """Every file of a group (parts included) as one zip, streamed."""
    from exports.views import zip_response

    try:
        paths = groups.zip_paths(members)
    except DownloadUnavailable as unavailable:
        raise ApiError(unavailable.message, unavailable.status, ArchiveTaskId=str(group_id)) from None
    for task in members:
        tasks.record_audit(
            task, AuditEvent.Action.DOWNLOAD, user, auth.client_addr(request),
            via="group zip" + (" (signed link)" if user is None else ""), group=str(group_id),
        )
    return zip_response(paths, f"group-{group_id}.zip")


def _starts_at_zero(request) -> bool:
    """Audit a download once, not for every range request a player makes while seeking."""
    header = request.META.get("HTTP_RANGE", "").replace(" ", "").lower()
    return not header or header.startswith("bytes=0-")


def _task_by_signed_link(request, raw_id, part: int = 1):
    invalid = ApiError(
        "the download link has expired or is invalid: ask /getarchivetaskstatus for a "
        "fresh Url, or download with credentials",
        401,
    )
    try:
        task_id = uuid.UUID(str(raw_id or "").strip())
    except ValueError:
        raise ApiError("no such file: the link is malformed", 404) from None
    # Task rows are never deleted (chain of custody), so an unknown id is a forged link.
    task = ExportTask.objects.select_related("camera").filter(id=task_id).first()
    if task is None or not signing.link_is_valid(
        task, query_param(request, "expires"), query_param(request, "signature"), part=part
    ):
        raise invalid
    return task


@api_endpoint(methods=("GET",))
def get_cameras(request):
    from exports.archive import camera_coverage, recorded_intervals

    start, end = _interval_params(request)
    cameras = []
    for camera in tasks.exportable_cameras(request.api_user).order_by("camera_id"):
        coverage = camera_coverage(camera)
        first, last = coverage["first"], coverage["last"]
        entry = {
            "CameraId": camera.camera_id,
            "Name": camera.display_name,
            "FirstRecord": format_psim_time(first),
            "LastRecord": format_psim_time(last),
            "Recorded": None,
        }
        if start is not None:
            entry["Recorded"] = [
                {"From": format_psim_time(a), "To": format_psim_time(b)}
                for a, b in recorded_intervals(camera, start, end)
            ]
        cameras.append(entry)
    return JsonResponse({"Cameras": cameras})


def _interval_params(request):
    """?from=&to= for /getcameras: both optional; `to` defaults to now, `from` to `to` - 24 h
    when only `to` is given. Neither: no Recorded intervals are listed."""
    raw_from, raw_to = query_param(request, "from"), query_param(request, "to")
    if raw_from is None and raw_to is None:
        return None, None
    try:
        end = parse_psim_time(raw_to) if raw_to else datetime.now(UTC)
        start = parse_psim_time(raw_from) if raw_from else end - timedelta(hours=24)
    except ValueError as failure:
        raise ApiError(f"from/to: {failure}", 400) from None
    if end <= start:
        raise ApiError("to must be after from", 400)
    if end - start > timedelta(days=31):
        raise ApiError("from/to may span at most 31 days", 400)
    return start, end


@api_endpoint(methods=("GET",), authenticate=False)
def openapi_document(request):
    from exports.openapi import document

    return JsonResponse(document(request))


@api_endpoint(methods=("GET",), authenticate=False)
def healthz(request):
    """Liveness of what an export needs (exports/health.py says what each field means)."""
    from exports.health import health

    checks, healthy = health()
    return JsonResponse(checks, status=200 if healthy else 503)


# -- Django's own error paths ---------------------------------------------------------------
# Errors raised before a view runs (a disallowed Host header, a path that matches nothing
# under an API name) go to Django's handlers. psimexport/urls.py points handler400/404/500 here:
# API paths get JSON in the contract's shape, every other path Django's default pages.

API_PREFIXES = (
    "/createarchivetask", "/getarchivetaskstatus", "/download", "/deletearchivetask",
    "/keeparchivetask", "/getcameras", "/openapi.json", "/healthz",
)


def is_api_path(path: str) -> bool:
    return path.lower().startswith(API_PREFIXES)


def handler400(request, exception=None):
    from django.views import defaults

    if is_api_path(request.path):
        return error("bad request", 400)
    return defaults.bad_request(request, exception)


def handler404(request, exception=None):
    from django.views import defaults

    if is_api_path(request.path):
        return error(f"no such endpoint {request.path[:100]}", 404)
    return defaults.page_not_found(request, exception)


def handler500(request):
    from django.views import defaults

    if is_api_path(request.path):
        return error("internal error; the server log has the details", 500)
    return defaults.server_error(request)
