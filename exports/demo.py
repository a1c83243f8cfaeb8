"""The demo camera: a generated Frigate-layout archive that keeps up with the clock.

`make run` creates it when no camera exists (PSIMEXPORT_DEMO), and keeps appending a segment
every ten seconds while it runs, so a new user always has recent footage to export.
"""

import logging
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

from django.conf import settings

from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import Camera

logger = logging.getLogger(__name__)

DEMO_CAMERA_ID = "1"
DEMO_SOURCE_NAME = "front_door"
SEGMENT_SECONDS = 10
HISTORY = timedelta(minutes=10)
KEEP = timedelta(hours=6)
DEMO_SPEC = SegmentSpec(width=640, height=360, fps=Fraction(15), crf=28)


def demo_root() -> Path:
    return Path(settings.DEMO_DIR)


def _segment_start(moment: datetime) -> datetime:
    """The 10-second boundary at or before `moment`."""
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment - timedelta(seconds=moment.second % SEGMENT_SECONDS)


def demo_wanted() -> bool:
    """True when `make run` should create or keep the demo: it is on and no real camera exists."""
    if not settings.PSIMEXPORT_DEMO:
        return False
    cameras = Camera.objects.all()
    if not cameras.exists():
        return True
    return cameras.filter(camera_id=DEMO_CAMERA_ID, archive_path=str(demo_root())).exists()


def ensure_demo_camera() -> Camera:
    camera, _ = Camera.objects.update_or_create(
        camera_id=DEMO_CAMERA_ID,
        defaults={
            "name": "Demo camera (generated)",
            "archive_path": str(demo_root()),
            "source_name": DEMO_SOURCE_NAME,
            "layout": Camera.Layout.FRIGATE,
            "timezone": "UTC",
        },
    )
    return camera


def write_missing_segments(now: datetime | None = None, history: timedelta = HISTORY) -> int:
    """Write every complete 10 s segment of the last `history` that is not on disk yet."""
    now = now or datetime.now(UTC)
    last_complete = _segment_start(now) - timedelta(seconds=SEGMENT_SECONDS)
    start = _segment_start(now - history)
    written = 0
    while start <= last_complete:
        path = frigate_path(demo_root(), DEMO_SOURCE_NAME, start)
        if not path.exists():
            temporary = path.with_name(f".{path.name}.tmp.mp4")
            write_segment(temporary, start, SEGMENT_SECONDS, DEMO_SPEC)
            temporary.rename(path)  # the indexer never sees a half-written demo file
            written += 1
        start += timedelta(seconds=SEGMENT_SECONDS)
    return written


def prune_old_segments(now: datetime | None = None) -> int:
    """Keep the demo archive small: drop segments older than KEEP."""
    cutoff = (now or datetime.now(UTC)) - KEEP
    removed = 0
    for path in demo_root().glob(f"*/*/{DEMO_SOURCE_NAME}/*.mp4"):
        day, hour = path.parts[-4], path.parts[-3]
        try:
            folder_time = datetime.strptime(f"{day} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        except ValueError:
            continue
        if folder_time + timedelta(hours=1) < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def refresh_demo(camera: Camera, history: timedelta = HISTORY):
    """Bring the demo archive up to now and index it; return the index summary."""
    from exports.archive import index_camera

    written = write_missing_segments(history=history)
    prune_old_segments()
    summary = index_camera(camera)
    logger.info("demo archive: %d new segment(s); %s", written, summary)
    return summary


def follow(camera: Camera, stop=lambda: False) -> None:
    """Append a segment every ten seconds, as a recorder would, until `stop()`."""
    while not stop():
        refresh_demo(camera, history=timedelta(minutes=1))
        wake = _segment_start(datetime.now(UTC)) + timedelta(seconds=SEGMENT_SECONDS, milliseconds=200)
        while not stop() and datetime.now(UTC) < wake:
            time.sleep(0.2)
