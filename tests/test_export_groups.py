"""Several cameras, one range, one package (API `CameraIds`, issue 13): a group of tasks whose
files all start with the frame on screen at From, downloadable as one zip."""

import io
import zipfile
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from django.test import Client

from exports.archive import index_camera
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import Camera, ExportTask
from tests import api_support
from tests.api_support import psim, run_worker
from tests.media_helpers import decode_with_pyav

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

T3 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
FROM, TO = T3 + timedelta(milliseconds=1234), T3 + timedelta(seconds=3)


@pytest.fixture(scope="module")
def group_archive(tmp_path_factory):
    """Camera "a": 25 fps from T3; camera "b": 10 fps from T3 + 30 ms (another clock)."""
    root = tmp_path_factory.mktemp("group")
    write_segment(frigate_path(root, "a", T3), T3, 4, SegmentSpec(width=160, height=120, acodec="aac"))
    late = T3 + timedelta(milliseconds=30)
    write_segment(frigate_path(root, "b", late), late, 4,
                  SegmentSpec(width=160, height=120, fps=Fraction(10), acodec=None))
    return root


@pytest.fixture
def group_cameras(db, group_archive, users):
    made = []
    for camera_id in ("a", "b"):
        camera = Camera.objects.create(
            camera_id=camera_id, archive_path=str(group_archive), layout="frigate"
        )
        index_camera(camera)
        camera.allowed_users.add(users["alice"])
        made.append(camera)
    made[0].allowed_users.add(users["bob"])  # bob may export "a" only
    return made


def create_group(client, capture, **body):
    with capture(execute=True):
        return client.create(**body)


def test_a_group_starts_every_camera_on_the_frame_on_screen_at_from(
    group_cameras, alice, exports_queue, django_capture_on_commit_callbacks, tmp_path
):
    response = create_group(
        alice, django_capture_on_commit_callbacks,
        CameraIds=["a", "b"], From=psim(FROM), To=psim(TO),
    )
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert (answer["CameraId"], answer["CameraIds"], answer["State"]) == ("a", ["a", "b"], "Created")
    group_id = answer["ArchiveTaskId"]
    members = ExportTask.objects.filter(batch=group_id)
    assert {str(t.id) for t in members} == {t["ArchiveTaskId"] for t in answer["Tasks"]}
    assert alice.status(group_id).json()["State"] == "Created"

    run_worker(exports_queue)
    status = alice.status(group_id).json()
    assert (status["State"], status["Percents"]) == ("ReadyForDownload", 100)
    assert [t["State"] for t in status["Tasks"]] == ["ReadyForDownload"] * 2
    data = b"".join(Client().get(status["Url"].split("testserver", 1)[1]).streaming_content)
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = sorted(archive.namelist())
    assert [n.split("_")[0] for n in names] == ["camera-a", "camera-b"]
    firsts = {}
    for name in names:
        path = tmp_path / name
        path.write_bytes(archive.read(name))
        decoded = decode_with_pyav(path)
        firsts[name.split("_")[0]] = (decoded.walls[0], decoded.walls[-1])
    # Each file starts with the frame on screen at From: 25 fps frames at 1.200 s, 10 fps
    # frames (shot from 30 ms) at 1.230 s; and ends with the one on screen just before To.
    assert firsts["camera-a"] == (T3 + timedelta(milliseconds=1200), T3 + timedelta(milliseconds=2960))
    assert firsts["camera-b"] == (T3 + timedelta(milliseconds=1230), T3 + timedelta(milliseconds=2930))


def test_every_camera_of_a_group_must_be_exportable_or_nothing_is_created(
    group_cameras, bob, django_capture_on_commit_callbacks
):
    response = create_group(
        bob, django_capture_on_commit_callbacks, CameraIds=["a", "b"], From=psim(FROM), To=psim(TO)
    )
    assert response.status_code == 404
    assert response.json()["ErrorMessage"] == "CameraIds 'b' is not a camera you may export"
    assert response.json()["ArchiveTaskId"] is None
    assert not ExportTask.objects.exists()


def test_a_group_is_404_to_whoever_cannot_see_every_camera_of_it(
    group_cameras, alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    group_id = create_group(
        alice, django_capture_on_commit_callbacks, CameraIds=["a", "b"], From=psim(FROM), To=psim(TO)
    ).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    assert bob.status(group_id).status_code == 404
    assert bob.get("/download", {"file": group_id}).status_code == 404
    assert bob.post("/deletearchivetask", {"ArchiveTaskId": group_id}).status_code == 404
    assert alice.get("/download", {"file": group_id}).status_code == 200
    deleted = alice.post("/deletearchivetask", {"ArchiveTaskId": group_id}).json()
    assert deleted["State"] == "Deleted" and [t["State"] for t in deleted["Tasks"]] == ["Deleted"] * 2
    assert alice.get("/download", {"file": group_id}).status_code == 410


def test_camera_id_beside_camera_ids_comes_first_and_counts_once(
    group_cameras, alice, django_capture_on_commit_callbacks
):
    answer = create_group(
        alice, django_capture_on_commit_callbacks,
        CameraId="b", CameraIds=["a", "b"], From=psim(FROM), To=psim(TO),
    ).json()
    assert answer["CameraIds"] == ["b", "a"] and len(answer["Tasks"]) == 2


def test_a_camera_without_recording_in_the_range_refuses_the_whole_group(
    group_cameras, cameras, users, alice, django_capture_on_commit_callbacks
):
    cameras[0].allowed_users.add(users["alice"])  # camera "1" records on another day
    response = create_group(
        alice, django_capture_on_commit_callbacks, CameraIds=["a", "1"], From=psim(FROM), To=psim(TO)
    )
    assert response.status_code == 404
    assert "camera 1 has no recording" in response.json()["ErrorMessage"]
    assert not ExportTask.objects.filter(camera__camera_id="a").exists()


@pytest.mark.parametrize("value", [[], "a", [None], [{"x": 1}], ["a"] * 17])
def test_bad_camera_ids_are_400(group_cameras, alice, value):
    response = alice.create(CameraIds=value, From=psim(FROM), To=psim(TO))
    assert response.status_code == 400, response.json()
    assert response.json()["ErrorMessage"].startswith("CameraIds ")
