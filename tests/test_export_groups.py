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
FROM, TO = T3 + timedelta(milliseconds=1230), T3 + timedelta(seconds=3)
FRAME_A, FRAME_B = timedelta(milliseconds=40), timedelta(milliseconds=125)


@pytest.fixture(scope="module")
def group_archive(tmp_path_factory):
    """Camera "a": 25 fps from T3; camera "b": 8 fps from T3 + 1 s (frames at other instants)."""
    root = tmp_path_factory.mktemp("group")
    write_segment(frigate_path(root, "a", T3), T3, 4, SegmentSpec(width=160, height=120, acodec="aac"))
    late = T3 + timedelta(seconds=1)
    write_segment(frigate_path(root, "b", late), late, 3,
                  SegmentSpec(width=160, height=120, fps=Fraction(8), acodec=None))
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
    # Each file starts with the frame on screen at From: 25 fps frames at 1.200 s, 8 fps
    # frames (shot from 1 s) at 1.125 s; and ends with the one on screen just before To.
    assert firsts["camera-a"] == (T3 + timedelta(milliseconds=1200), T3 + timedelta(milliseconds=2960))
    assert firsts["camera-b"] == (T3 + timedelta(milliseconds=1125), T3 + timedelta(milliseconds=2875))


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


def mosaic_group(client, capture, queue) -> dict:
    """Cameras a and b with a 2x2 mosaic, run; the create answer."""
    answer = create_group(
        client, capture, CameraIds=["a", "b"], Mosaic="2x2", From=psim(FROM), To=psim(TO)
    ).json()
    assert [t.get("Mosaic") for t in answer["Tasks"]] == [None, None, "2x2"]
    run_worker(queue)
    return answer


def test_a_mosaic_shows_every_camera_at_the_same_instant_in_its_tile(
    group_cameras, alice, exports_queue, django_capture_on_commit_callbacks, tmp_path
):
    import av

    from exports.media.synth import frame_wall_time

    answer = mosaic_group(alice, django_capture_on_commit_callbacks, exports_queue)
    status = alice.status(answer["ArchiveTaskId"]).json()
    assert status["State"] == "ReadyForDownload", status
    mosaic = next(t for t in status["Tasks"] if t.get("Mosaic"))
    path = tmp_path / "mosaic.mp4"
    path.write_bytes(b"".join(Client().get(mosaic["Url"].split("testserver", 1)[1]).streaming_content))
    with av.open(str(path)) as container:
        frames = [
            (frame.time, frame.to_ndarray(format="gray")) for frame in container.decode(video=0)
        ]
    assert len(frames) == 45  # 1.77 s at 25 fps, from From on
    assert frames[0][1].shape == (240, 320)
    for time, gray in frames:
        at = FROM + timedelta(seconds=time)
        tile_a, tile_b = gray[:120, :160], gray[:120, 160:]
        # The frame on screen at that instant: 25 fps frames from T3, 8 fps from T3 + 1 s.
        assert frame_wall_time(tile_a) == T3 + (at - T3) // FRAME_A * FRAME_A, time
        late = T3 + timedelta(seconds=1)
        assert frame_wall_time(tile_b) == late + (at - late) // FRAME_B * FRAME_B, time
        assert gray[130:, 160:].max() < 40  # the fourth tile: no camera, no label
        assert gray[112:118, 2:30].max() > 200  # camera a's label, white on black
    zipped = zipfile.ZipFile(io.BytesIO(b"".join(
        Client().get(status["Url"].split("testserver", 1)[1]).streaming_content)))
    assert sorted(n.split("_")[0] for n in zipped.namelist()) == ["camera-a", "camera-b", "mosaic-2x2"]


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"Mosaic": "4x4"}, "Mosaic '4x4' is not one of 2x2, 3x3"),
        ({"Mosaic": "2x2", "To": psim(FROM + timedelta(hours=2))}, "Mosaic covers at most 1 hour"),
        ({"Mosaic": 5}, 'Mosaic must be "2x2" or "3x3"'),
    ],
)
def test_bad_mosaics_are_400(group_cameras, alice, extra, message):
    response = alice.create(**{"CameraIds": ["a", "b"], "From": psim(FROM), "To": psim(TO), **extra})
    assert response.status_code == 400, response.json()
    assert response.json()["ErrorMessage"].startswith(message)
    assert not ExportTask.objects.exists()


def test_the_export_form_makes_a_group_with_its_mosaic_and_max_file_size(
    group_cameras, django_capture_on_commit_callbacks
):
    page = Client()
    page.login(username="alice", password="alice-secret-pw")
    form = {
        "camera": ["a", "b"], "start": "2026-11-23 09:00:01", "end": "2026-11-23 09:00:03",
        "format": "mp4", "mosaic": "2x2", "max_file_size": "2.5", "action": "export",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post("/export/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    made = list(ExportTask.objects.order_by("mosaic", "created_at"))
    assert [(t.camera.camera_id, t.mosaic, t.max_file_size) for t in made] == [
        ("a", "", 2_500_000), ("b", "", 2_500_000), ("a", "2x2", None)
    ]
    assert len({t.batch for t in made}) == 1 and made[0].batch is not None

    alone = page.post("/export/", {**form, "camera": ["a"]})
    assert "Choose at least two cameras for a mosaic." in alone.content.decode()
    tiny = page.post("/export/", {**form, "max_file_size": "0.5"})
    assert "below the smallest limit, 1048576 bytes" in tiny.content.decode()
    assert ExportTask.objects.count() == 3


def test_a_mosaic_is_hidden_from_whoever_may_not_export_every_camera_of_it(
    group_cameras, alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    answer = mosaic_group(alice, django_capture_on_commit_callbacks, exports_queue)
    task_a, _task_b, mosaic = (t["ArchiveTaskId"] for t in answer["Tasks"])
    assert bob.status(task_a).status_code == 200  # bob may export camera "a"
    assert bob.status(mosaic).status_code == 404  # but the mosaic also shows "b"
    assert bob.get("/download", {"file": mosaic}).status_code == 404
    assert alice.get("/download", {"file": mosaic}).status_code == 200
    page = Client()
    page.login(username="bob", password="bob-secret-pw")
    assert page.get(f"/tasks/{mosaic}/").status_code == 404
    assert mosaic not in page.get("/tasks/").content.decode()
    assert task_a in page.get("/tasks/").content.decode()


# -- case data: Name, Comment and Keep go to every task of the group ---------------------------


def test_name_comment_and_keep_go_to_every_task_of_a_group_and_its_mosaic(
    group_cameras, alice, users, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Permission

    from exports.models import AuditEvent

    users["alice"].user_permissions.add(Permission.objects.get(codename="keep_exporttask"))
    response = create_group(
        alice, django_capture_on_commit_callbacks, CameraIds=["a", "b"], Mosaic="2x2",
        From=psim(FROM), To=psim(TO), Name=" Case 2026-0042 ", Comment="north gate", Keep=True,
    )
    assert response.status_code == 200, response.json()
    made = ExportTask.objects.filter(batch=response.json()["ArchiveTaskId"]).order_by("created_at")
    assert [(t.camera.camera_id, t.mosaic, t.case_name, t.case_comment, t.keep, t.kept_by)
            for t in made] == [
        ("a", "", "Case 2026-0042", "north gate", True, users["alice"]),
        ("b", "", "Case 2026-0042", "north gate", True, users["alice"]),
        ("a", "2x2", "Case 2026-0042", "north gate", True, users["alice"]),
    ]
    for event in AuditEvent.objects.filter(action="create"):
        assert (event.detail["name"], event.detail["keep"]) == ("Case 2026-0042", True)
    status = alice.status(response.json()["ArchiveTaskId"]).json()
    assert [(t["Name"], t["Comment"], t["Keep"]) for t in status["Tasks"]] == [
        ("Case 2026-0042", "north gate", True)
    ] * 3


def test_keep_without_the_permission_refuses_the_whole_group(
    group_cameras, alice, django_capture_on_commit_callbacks
):
    response = create_group(
        alice, django_capture_on_commit_callbacks, CameraIds=["a", "b"],
        From=psim(FROM), To=psim(TO), Name="Case 7", Keep=True,
    )
    assert response.status_code == 403
    assert "exports.keep_exporttask" in response.json()["ErrorMessage"]
    assert response.json()["ArchiveTaskId"] is None
    assert not ExportTask.objects.exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("Name", "x" * 201, "Name is 201 characters long; at most 200 are allowed"),
        ("Comment", "bell\x07", "Comment must not contain control characters"),
        ("Keep", "yes", "Keep must be true or false"),
    ],
)
def test_bad_case_data_refuses_the_whole_group(group_cameras, alice, field, value, message):
    response = alice.create(CameraIds=["a", "b"], From=psim(FROM), To=psim(TO), **{field: value})
    assert response.status_code == 400
    assert response.json()["ErrorMessage"] == message
    assert not ExportTask.objects.exists()


def test_a_group_with_a_task_under_hold_is_not_deleted_at_all(
    group_cameras, alice, users, exports_queue, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Permission

    users["alice"].user_permissions.add(Permission.objects.get(codename="keep_exporttask"))
    group_id = create_group(
        alice, django_capture_on_commit_callbacks, CameraIds=["a", "b"],
        From=psim(FROM), To=psim(TO), Name="Case 9",
    ).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    second = ExportTask.objects.get(batch=group_id, camera__camera_id="b")
    assert alice.post("/keeparchivetask", {"ArchiveTaskId": str(second.id), "Keep": True}).json()["Keep"]
    response = alice.post("/deletearchivetask", {"ArchiveTaskId": group_id})
    assert response.status_code == 409, response.content[:300]
    assert f"export {second.id} is under legal hold" in response.json()["ErrorMessage"]
    assert response.json()["ArchiveTaskId"] == group_id and "Url" not in response.json()
    assert [t.state for t in ExportTask.objects.filter(batch=group_id)] == ["ReadyForDownload"] * 2
    assert alice.get("/download", {"file": group_id}).status_code == 200
