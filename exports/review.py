"""The review page: watch a camera's archive, mark In and Out to the frame, export that.

Views only; the media work is exports/media/playback.py. Every URL here needs a session and a
grant on the camera (404 otherwise, as everywhere) and is marked private and not stored, so no
shared cache keeps footage. Opening the page is audited as a view; the pieces the player
fetches are not downloads and are not audited one by one.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import av
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from exports import archive, tasks, thumbnails
from exports.auth import client_addr
from exports.forms import EXPORT_FORMATS, format_psim_time, parse_psim_time
from exports.media import playback
from exports.models import AuditEvent, ExportTask, Segment
from exports.views import page, render_page, visible_camera

# How long a proxy request waits for one of PSIMEXPORT_PROXY_SLOTS before it gets 503.
PROXY_WAIT_SECONDS = 10
# Longest window one index request may ask for (the timeline's widest zoom is 24 h).
MAX_INDEX_HOURS = 48
PREVIEW_WIDTH = 160


def _private(response):
    """Footage and its index are for this user only: never in a shared or disk cache."""
    response["Cache-Control"] = "private, no-store"
    return response


def _instant(value) -> datetime | None:
    try:
        return parse_psim_time(value) if value else None
    except ValueError:
        return None


def _ms(moment: datetime) -> float:
    """Milliseconds since the epoch, to the microsecond: the page maps frames to wall time
    with these, so they must not be rounded to whole milliseconds."""
    return round(moment.timestamp() * 1000, 3)


# -- the page ---------------------------------------------------------------------------------


@page
def review(request, camera_id):
    camera = visible_camera(request.user, camera_id)
    at = _instant(request.GET.get("t"))
    if at is None or camera.first_recording is None:
        at = (
            camera.last_recording - timedelta(minutes=1)
            if camera.last_recording
            else timezone.now()
        )
    if camera.first_recording and at < camera.first_recording:
        at = camera.first_recording
    AuditEvent.objects.create(
        task_id=None,
        camera_id=camera.camera_id,
        action=AuditEvent.Action.VIEW,
        user=request.user,
        username=request.user.get_username(),
        remote_addr=client_addr(request) or None,
        detail={"at": format_psim_time(at)},
    )
    context = {
        "camera": camera,
        "at_ms": _ms(at),
        "first_ms": _ms(camera.first_recording) if camera.first_recording else "",
        "last_ms": _ms(camera.last_recording) if camera.last_recording else "",
        "formats": EXPORT_FORMATS,
        "default_format": settings.PSIMEXPORT_CONTAINER_FORMAT,
    }
    return _private(render_page(request, "exports/review.html", context, nav="cameras"))


# -- the index the player and the timeline draw from ------------------------------------------


@login_required
@never_cache
def review_index(request, camera_id):
    """Segments, recorded spans, gaps and this camera's exports within ?from=&to=."""
    camera = visible_camera(request.user, camera_id)
    start, end = _instant(request.GET.get("from")), _instant(request.GET.get("to"))
    if start is None or end is None or end <= start:
        return _private(
            JsonResponse({"error": "from and to must be times, from before to"}, status=400)
        )
    if end - start > timedelta(hours=MAX_INDEX_HOURS):
        end = start + timedelta(hours=MAX_INDEX_HOURS)
    coverage = archive.segments_covering(camera, start, end)
    segments = [
        {
            "id": s.pk,
            "start": _ms(s.start),
            "end": _ms(s.end),
            "fps": s.frame_rate,
            # The player asks for pictures only (audio=0), so only the video codec decides.
            "proxy": playback.needs_proxy(s.video_codec, None),
            "audio": bool(s.audio_codec),
        }
        for s in coverage.segments
    ]
    spans = archive.recorded_intervals(camera, start, end, coverage.segments)
    exports = (
        tasks.visible_tasks(request.user)
        .filter(camera=camera, start__lt=end, end__gt=start)
        .exclude(state__in=[ExportTask.State.DELETED])
        .order_by("start")[:200]
    )
    body = {
        "from": _ms(start),
        "to": _ms(end),
        "pieceSeconds": playback.PIECE_SECONDS,
        "proxyPieceSeconds": playback.PROXY_PIECE_SECONDS,
        "segments": segments,
        "spans": [[_ms(a), _ms(b)] for a, b in spans],
        "gaps": [[_ms(a), _ms(b)] for a, b in coverage.gaps],
        "exports": [
            {
                "id": str(t.id),
                "start": _ms(t.start),
                "end": _ms(t.end),
                "state": t.state,
                "url": reverse("task-detail", args=[t.id]),
            }
            for t in exports
        ],
    }
    return _private(JsonResponse(body))


# -- media ------------------------------------------------------------------------------------


def _visible_segment(request, camera_id, segment_id) -> tuple[Segment, Path]:
    camera = visible_camera(request.user, camera_id)
    try:
        segment = Segment.objects.get(pk=segment_id, camera=camera)
        return segment, archive.segment_abspath(camera, segment)
    except (Segment.DoesNotExist, archive.ArchiveError):
        raise Http404("No such recording.") from None


@login_required
def review_piece(request, camera_id, segment_id, index):
    """One piece of a segment as fragmented MP4 (see playback.py); its place in headers."""
    segment, path = _visible_segment(request, camera_id, segment_id)
    at = _float(request.GET.get("at"))
    audio = request.GET.get("audio") != "0"
    # Sound the browser cannot play (G.711, PCM) needs the proxy only when sound is asked for.
    proxy = request.GET.get("proxy") == "1" or playback.needs_proxy(
        segment.video_codec, (segment.audio_codec or None) if audio else None
    )
    try:
        if proxy:
            with proxy_slot() as got:
                if not got:
                    response = HttpResponse("Too many proxy encodes; try again.", status=503)
                    response["Retry-After"] = "2"
                    return _private(response)
                piece = playback.proxy_piece(path, index, at=at, audio=audio)
        else:
            piece = playback.copy_piece(path, index, at=at, audio=audio)
    except (playback.PieceError, av.error.FFmpegError, OSError) as error:
        raise Http404(f"Cannot play this piece: {error}") from None
    response = HttpResponse(piece.data, content_type="video/mp4")
    response["X-Piece-Index"] = str(piece.index)
    response["X-Piece-Start"] = f"{float(piece.start):.6f}"
    response["X-Piece-End"] = f"{float(piece.end):.6f}"
    response["X-Piece-Last"] = "1" if piece.last else "0"
    response["X-Piece-Technique"] = piece.technique
    response["X-Codecs"] = piece.codecs
    return _private(response)


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number else None


@login_required
def review_frame(request, camera_id):
    """A small JPEG of the keyframe at or before ?t= (the timeline's hover preview)."""
    camera = visible_camera(request.user, camera_id)
    at = _instant(request.GET.get("t"))
    if at is None:
        raise Http404("No time given.")
    segment = (
        Segment.objects.filter(camera=camera, start__lte=at, end__gt=at).order_by("-start").first()
    )
    if segment is None:
        raise Http404("Nothing recorded then.")
    try:
        path = archive.segment_abspath(camera, segment)
        frame = playback.keyframe_before(path, (at - segment.start).total_seconds(), PREVIEW_WIDTH)
        data = thumbnails._encode_jpeg(frame)
    except (playback.PieceError, archive.ArchiveError, av.error.FFmpegError, OSError):
        raise Http404("Cannot decode that moment.") from None
    return _private(HttpResponse(data, content_type="image/jpeg"))


# -- the cap on live proxy encodes ------------------------------------------------------------


@contextmanager
def proxy_slot():
    """Hold one of PSIMEXPORT_PROXY_SLOTS lock files (shared by every gunicorn worker); yield
    False if none frees up within PROXY_WAIT_SECONDS."""
    folder = Path(settings.DATA_DIR) / "run" / "proxy-slots"
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + PROXY_WAIT_SECONDS
    while True:
        for number in range(settings.PSIMEXPORT_PROXY_SLOTS):
            handle = open(folder / f"{number}.lock", "a")  # noqa: SIM115 - held while encoding
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if time.monotonic() >= deadline:
            yield False
            return
        time.sleep(0.05)
