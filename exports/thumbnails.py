"""The latest recorded frame of a camera as a small JPEG, decoded with PyAV and cached on disk."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import av
from django.conf import settings

from exports.archive import segment_abspath

log = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320
# Decode only the last few seconds of the newest segment: enough to reach a keyframe.
TAIL_SECONDS = 4
# The newest segment may be a file the recorder is still writing; try an older one then.
SEGMENTS_TO_TRY = 3


def cache_dir(camera) -> Path:
    return Path(settings.DATA_DIR) / "cache" / "thumbnails" / str(camera.pk)


# A page request waits at most this long for a thumbnail to be decoded; a slow or hung
# archive gets none this time (the decode goes on in the background and is cached).
DECODE_BUDGET_SECONDS = 2.0


def latest_thumbnail(camera) -> Path | None:
    """Path of a JPEG of the camera's latest decodable frame, or None if nothing decodes
    (or not within the budget)."""
    from exports import timebox

    sources = [
        Path(segment_abspath(camera, segment))
        for segment in camera.segments.order_by("-start")[:SEGMENTS_TO_TRY]
    ]
    try:
        return timebox.within_budget(
            f"thumbnail-{camera.pk}", lambda: _first_thumbnail(camera, sources),
            DECODE_BUDGET_SECONDS,
        )
    except timebox.NotDone:
        return None


def _first_thumbnail(camera, sources: list[Path]) -> Path | None:
    """Runs off the request thread (no database here): the cached or a new JPEG."""
    for source in sources:
        try:
            stat = source.stat()
        except OSError:
            continue
        key = hashlib.sha256(f"{source}\0{stat.st_mtime_ns}\0{stat.st_size}".encode()).hexdigest()
        cached = cache_dir(camera) / f"{key[:32]}.jpg"
        if cached.exists():
            return cached
        try:
            jpeg = last_frame_jpeg(source)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.info("no thumbnail from %s: %s", source, exc)
            continue
        if jpeg is None:
            continue
        _store(cached, jpeg)
        return cached
    return None


def last_frame_jpeg(source: Path, width: int = THUMBNAIL_WIDTH) -> bytes | None:
    """Decode the last video frame of `source` and encode it as a JPEG `width` pixels wide."""
    with av.open(str(source)) as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if container.duration and container.duration > TAIL_SECONDS * av.time_base:
            # Container-level seek (stream=None) takes AV_TIME_BASE units and lands on a keyframe.
            container.seek(container.duration - TAIL_SECONDS * av.time_base, backward=True)
        last = None
        for frame in container.decode(stream):
            last = frame
        if last is None:
            return None
    width = min(width, last.width)
    height = max(2, round(last.height * width / last.width / 2) * 2)
    return _encode_jpeg(last.reformat(width=width, height=height, format="yuvj420p"))


def _encode_jpeg(frame) -> bytes:
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = frame.time_base or 1
    codec.options = {"q:v": "4"}
    frame.pts = 0
    packets = list(codec.encode(frame)) + list(codec.encode(None))
    return b"".join(bytes(packet) for packet in packets)


def _store(path: Path, data: bytes) -> None:
    """Write atomically, and drop older thumbnails of the same camera."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
    for old in path.parent.glob("*.jpg"):
        if old != path:
            old.unlink(missing_ok=True)
