"""A camera that is still recording, while the index lags behind its archive (issue 10).

Creating a task refreshes the index of a growing camera within a 1 s budget; under load the
budget can run out before the newest files are indexed. A range the index has not seen yet
is then accepted and the job indexes the newest files before it exports; a range the index
knows to be empty still gets 404.

The refresh budget runs out deterministically here: a refresh of the camera that never
finishes is already running (as a slow or hung archive leaves one), so the create's refresh
waits for nothing and carries on with the index as it is.
"""

import os
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from exports import timebox
from exports.archive import index_camera
from exports.media.synth import frigate_path, write_segment
from exports.models import Camera, ExportTask, Segment
from tests import api_support
from tests.api_support import FRAME, SEGMENT_SECONDS, SPEC, psim, run_worker
from tests.media_helpers import decode_with_pyav

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice = api_support.alice

pytestmark = pytest.mark.django_db(transaction=True)


def write_segments(root: Path, first: datetime, count: int) -> None:
    """`count` 2 s segments of camera "9" from `first`, as its recorder writes them. The
    files are dated in the future, so the newest one counts as still being written however
    long the test takes to index it."""
    for index in range(count):
        start = first + timedelta(seconds=index * SEGMENT_SECONDS)
        path = frigate_path(root, "9", start)
        write_segment(path, start, SEGMENT_SECONDS, SPEC)
        later = datetime.now().timestamp() + 600
        os.utime(path, (later, later))


@pytest.fixture
def live(tmp_path, users):
    """Camera "9" (alice may export it), indexed with [base, base + 6 s); its recorder has
    since written [base + 6 s, base + 10 s), which the index has not seen."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    root = tmp_path / "live-archive"
    write_segments(root, base, 3)
    camera = Camera.objects.create(camera_id="9", archive_path=str(root), layout="frigate")
    camera.allowed_users.add(users["alice"])
    index_camera(camera)
    write_segments(root, base + timedelta(seconds=6), 2)
    return camera, base


@contextmanager
def refresh_stuck(camera):
    """A refresh of the camera that is still running past its budget (until the block
    ends): a create's refresh gives up at once."""
    release = threading.Event()
    with pytest.raises(timebox.NotDone):
        timebox.within_budget(f"index-{camera.pk}", release.wait, 0)
    try:
        yield
    finally:
        release.set()


@pytest.fixture
def index_lags(live):
    with refresh_stuck(live[0]):
        yield


def test_a_range_the_index_has_not_seen_yet_is_accepted_and_exported_after_the_job_indexes_it(
    live, index_lags, alice, exports_queue
):
    camera, base = live
    start, end = base + timedelta(seconds=6.4), base + timedelta(seconds=9.6)
    before = datetime.now(UTC)

    ranged = alice.create(CameraId="9", From=psim(start), To=psim(end))
    open_ended = alice.create(CameraId="9", From=psim(start))

    assert ranged.status_code == 200, ranged.json()
    assert open_ended.status_code == 200, open_ended.json()
    # No To, the camera still recording and the index behind: up to the time of the request.
    open_task = ExportTask.objects.get(id=open_ended.json()["ArchiveTaskId"])
    assert before <= open_task.end <= datetime.now(UTC)
    assert Segment.objects.filter(camera=camera).count() == 3  # the index still lags

    run_worker(exports_queue)

    assert Segment.objects.filter(camera=camera).count() == 5  # the job indexed the new files
    for response, last in ((ranged, end - FRAME), (open_ended, base + timedelta(seconds=10) - FRAME)):
        task = ExportTask.objects.get(id=response.json()["ArchiveTaskId"])
        assert task.state == "ReadyForDownload", task.error_message
        walls = decode_with_pyav(Path(django_settings.EXPORTS_DIR) / task.output_path).walls
        assert walls[0] == start and walls[-1] == last
        assert all(b - a == FRAME for a, b in zip(walls, walls[1:], strict=False))


def test_a_range_accepted_while_the_index_lagged_fails_in_the_job_if_nothing_was_recorded(
    live, index_lags, alice, exports_queue
):
    _, base = live
    after_the_recording = base + timedelta(seconds=12)
    response = alice.create(
        CameraId="9", From=psim(after_the_recording), To=psim(after_the_recording + timedelta(seconds=2))
    )
    assert response.status_code == 200, response.json()

    run_worker(exports_queue)

    status = alice.status(response.json()["ArchiveTaskId"]).json()
    assert status["State"] == "Failed"
    assert status["ErrorMessage"].startswith("no recording: camera 9 has no recording between")


def test_a_range_the_index_knows_is_empty_still_gets_404_while_it_lags(
    live, index_lags, alice, cameras
):
    _, base = live
    before_the_recording = base - timedelta(seconds=20)
    response = alice.create(
        CameraId="9", From=psim(before_the_recording), To=psim(before_the_recording + timedelta(seconds=5))
    )
    assert response.status_code == 404
    assert "no recording between" in response.json()["ErrorMessage"]

    # Camera 1 stopped recording long before its index last looked: after its last frame,
    # nothing is there, lagging refresh or not.
    stopped = cameras[0]
    later = stopped.last_recording + timedelta(seconds=30)
    with refresh_stuck(stopped):
        ranged = alice.create(CameraId="1", From=psim(later), To=psim(later + timedelta(seconds=5)))
        open_ended = alice.create(CameraId="1", From=psim(later))
    assert ranged.status_code == 404
    assert open_ended.status_code == 404
    assert "no recording after" in open_ended.json()["ErrorMessage"]
    assert ExportTask.objects.count() == 0
