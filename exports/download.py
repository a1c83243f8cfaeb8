"""Serve a finished export: streamed from disk, with validators and single byte ranges.

Django's FileResponse has no Range support, so this is ours. A whole-file answer uses
FileResponse (gunicorn can then sendfile() it); a range uses a reader that stops at the
range's end, so no server ever sends more than Content-Length.
"""

import re
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.http import http_date, parse_http_date_safe, quote_etag

from exports.models import ExportTask

CONTENT_TYPES = {
    "mp4": "video/mp4",
    "avi": "video/x-msvideo",
    "flv": "video/x-flv",
    "mov": "video/quicktime",
    "asf": "video/x-ms-asf",
    "mkv": "video/x-matroska",
    "jpg": "image/jpeg",
    "png": "image/png",
}
CHUNK = 256 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
# More digits than any file size needs; int() of thousands of digits is slow (and refused).
_MAX_DIGITS = 19
_HUGE = 10**_MAX_DIGITS


class DownloadUnavailable(Exception):
    """The task has no file to serve; carries the HTTP status (409 or 410) and a message."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


def export_file_path(task, part: int = 1) -> Path:
    """The task's file (or the given part of a task exported in parts), guaranteed inside
    EXPORTS_DIR/<task id>/, or DownloadUnavailable."""
    state = ExportTask.State
    if task.state in (state.CREATED, state.IN_PROGRESS):
        raise DownloadUnavailable(
            f"the export is not ready yet ({task.state}, {task.percents}%)", 409
        )
    if task.state == state.DELETED:
        raise DownloadUnavailable("the export file was deleted or has expired", 410)
    if task.state != state.READY:
        raise DownloadUnavailable(f"the task has no file: it is {task.state}", 409)
    if not task.output_path:
        raise DownloadUnavailable("the file was written outside the download area", 410)
    folder = (Path(settings.EXPORTS_DIR) / str(task.id)).resolve()
    path = (Path(settings.EXPORTS_DIR) / task.output_path).resolve()
    if part != 1:
        path = (folder / _part_entry(task, part)["file"]).resolve()
    if path.parent != folder or not path.is_file():
        raise DownloadUnavailable("the export file is gone", 410)
    return path


def task_file_paths(task) -> list[Path]:
    """Every file of a ready task: its parts in order, or its one file."""
    return [export_file_path(task, n) for n in range(1, len(task.parts or [None]) + 1)]


def _part_entry(task, part: int) -> dict:
    parts = task.parts or []
    if not 1 <= part <= max(len(parts), 1):
        raise DownloadUnavailable(
            f"the export has no part {part}; it has {max(len(parts), 1)}", 404
        )
    return parts[part - 1] if parts else {"file": Path(task.output_path).name}


def part_number(value) -> int:
    """The `part` query parameter: 1 when absent; DownloadUnavailable(404) when not a
    positive whole number."""
    if value is None or value == "":
        return 1
    text = str(value).strip()
    if not text.isdigit() or len(text) > 6 or int(text) < 1:
        raise DownloadUnavailable(f"no such part {text[:20]!r}: parts are numbered from 1", 404)
    return int(text)


def parse_range(header: str, size: int):
    """(first, last) byte positions of a single range, None to serve the whole file, or
    "unsatisfiable". Several ranges are answered with the whole file, as RFC 9110 allows."""
    if "," in header:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = (_position(text) for text in match.groups())
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    first = int(first)
    if last != "" and int(last) < first:
        return None  # last before first: syntactically invalid, so the header is ignored
    last = size - 1 if last == "" else min(int(last), size - 1)
    if first >= size:
        return "unsatisfiable"
    return first, last


def _position(digits: str):
    """A byte position; a longer number than any file is only "beyond the end"."""
    digits = digits.lstrip("0") or ("0" if digits else "")
    return _HUGE if len(digits) > _MAX_DIGITS else digits


def download_response(request, task, package: bool = False, part: int = 1) -> HttpResponse:
    """The file (or part), or its evidence package (`package=1`: a streamed zip; with the
    header `X-Package-Password` it is AES-256 encrypted). Raises DownloadUnavailable."""
    if not package:
        return file_response(request, task, part)
    from exports.evidence_package import package_response, task_files

    password = request.META.get("HTTP_X_PACKAGE_PASSWORD") or None
    return package_response([(task, task_files(task))], Path(task.output_path).stem, password)


def file_response(request, task, part: int = 1) -> HttpResponse:
    """The file (or part) of a ready task (raises DownloadUnavailable otherwise)."""
    path = export_file_path(task, part)
    stat = path.stat()
    digest = task.sha256 if part == 1 else _part_entry(task, part).get("sha256", "")
    etag = quote_etag(digest or f"{stat.st_size:x}-{int(stat.st_mtime):x}")
    last_modified = http_date(stat.st_mtime)
    headers = {
        "Content-Type": CONTENT_TYPES.get(task.format, "application/octet-stream"),
        "Content-Disposition": f'attachment; filename="{path.name}"',
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": last_modified,
        "Cache-Control": "private, no-transform",
        "X-Content-Type-Options": "nosniff",
    }
    if digest:
        headers["X-Content-SHA256"] = digest

    if _not_modified(request, etag, stat.st_mtime):
        response = HttpResponse(status=304)
        for name in ("ETag", "Last-Modified", "Cache-Control", "Accept-Ranges"):
            response[name] = headers[name]
        return response

    size = stat.st_size
    wanted = None
    range_header = request.META.get("HTTP_RANGE", "")
    if range_header and _if_range_matches(request, etag, last_modified):
        wanted = parse_range(range_header, size)
    if wanted == "unsatisfiable":
        response = JsonResponse(
            {
                "CameraId": task.camera.camera_id,
                "From": None,
                "To": None,
                "ArchiveTaskId": str(task.id),
                "ErrorMessage": f"range not satisfiable: the file has {size} bytes",
                "State": task.state,
            },
            status=416,
        )
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        return response
    if request.method == "HEAD":
        response = HttpResponse(status=200)
        for name, value in headers.items():
            response[name] = value
        response["Content-Length"] = str(size)
        return response
    if wanted is None:
        response = FileResponse(open(path, "rb"), status=200)  # noqa: SIM115 (closed by Django)
        response.block_size = CHUNK
        for name, value in headers.items():
            response[name] = value
        response["Content-Length"] = str(size)
        return response
    first, last = wanted
    response = StreamingHttpResponse(_read_range(path, first, last), status=206)
    for name, value in headers.items():
        response[name] = value
    response["Content-Range"] = f"bytes {first}-{last}/{size}"
    response["Content-Length"] = str(last - first + 1)
    return response


def _read_range(path: Path, first: int, last: int):
    with open(path, "rb") as handle:
        handle.seek(first)
        remaining = last - first + 1
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def _not_modified(request, etag: str, mtime: float) -> bool:
    if_none_match = request.META.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = parse_http_date_safe(request.META.get("HTTP_IF_MODIFIED_SINCE", ""))
    return since is not None and int(mtime) <= since


def _if_range_matches(request, etag: str, last_modified: str) -> bool:
    """A Range only applies when If-Range (if given) still names this file."""
    value = request.META.get("HTTP_IF_RANGE")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    return value == last_modified
