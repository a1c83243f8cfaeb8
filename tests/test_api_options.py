"""Export options through the API, the job and the pages: stills, overlay, timelapse."""

import io
import json
from datetime import timedelta

import av
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from exports.media import overlay, synth
from exports.models import ExportTask
from tests import api_support
from tests.api_support import FRAME, T0, psim, run_worker, settings_exports_dir
from tests.media_helpers import read_overlay_line
from tests.test_api import fetch

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice = api_support.alice

pytestmark = pytest.mark.django_db


def create_and_run(api, queue, capture, **body):
    with capture(execute=True):
        response = api.create(**body)
    assert response.status_code == 200, response.json()
    run_worker(queue)
    task_id = response.json()["ArchiveTaskId"]
    status = api.status(task_id).json()
    assert status["State"] == "ReadyForDownload", status
    return response.json(), status, ExportTask.objects.get(id=task_id)


def frames_of(data: bytes):
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


def test_still_over_the_api_is_the_frame_at_from_as_a_jpeg(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    at = T0 + timedelta(seconds=2.45)  # mid-GOP of the second file; frame 2.44-2.48 on screen
    body, status, task = create_and_run(
        alice, exports_queue, django_capture_on_commit_callbacks,
        CameraId="1", From=psim(at), To=psim(at + timedelta(seconds=3)), Format="JPG",
    )
    # To is ignored for a still: the task covers the instant From.
    assert body["From"] == "2026-11-20T10:00:02.450Z" and body["To"] == "2026-11-20T10:00:02.451Z"
    response, data = fetch(status["Url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"] == (
        'attachment; filename="camera-1_2026-11-20T10-00-02.450Z.jpg"'
    )
    (gray,) = frames_of(data)
    assert gray.shape == (120, 160)
    assert synth.frame_wall_time(gray) == T0 + timedelta(seconds=2.44)
    assert task.technique == "still"
    assert task.details["options"]["still"]["frame"] == "2026-11-20T10:00:02.440Z"


def test_timelapse_over_the_api_keeps_every_nth_frame(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    start, end = T0 + timedelta(seconds=1), T0 + timedelta(seconds=5)
    _, status, task = create_and_run(
        alice, exports_queue, django_capture_on_commit_callbacks,
        CameraId="1", From=psim(start), To=psim(end), Speed=5,
    )
    assert task.speed == 5 and task.technique == "timelapse_transcode"
    _, data = fetch(status["Url"])
    walls = [synth.frame_wall_time(g) for g in frames_of(data)]
    assert walls == [start + 5 * k * FRAME for k in range(20)]
    assert task.details["options"]["timelapse"]["kept_frames"] == 20


def test_overlay_over_the_api_draws_name_and_time(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    start, end = T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)
    _, status, task = create_and_run(
        alice, exports_queue, django_capture_on_commit_callbacks,
        CameraId="1", From=psim(start), To=psim(end), Overlay=True,
        OverlayPosition="Bottom-Left", OverlayZone="utc", OverlayMilliseconds=False,
    )
    assert (task.overlay, task.overlay_position, task.overlay_zone) == (True, "bottom-left", "utc")
    assert task.technique == "overlay_transcode"
    assert "overlay bottom-left" in task.options_text
    _, data = fetch(status["Url"])
    grays = frames_of(data)
    assert len(grays) == 50
    spec = overlay.OverlaySpec("Entrance", "bottom-left", None, False)
    lines = spec.lines(start)
    top, left, _ = overlay.label_box(spec, lines, 160, 120)
    scale = overlay.scale_for(160, 120)
    for gray in grays:
        wall = synth.frame_wall_time(gray)
        name = read_overlay_line(gray, top + scale, left + scale, scale, len(lines[0]))
        text = read_overlay_line(gray, top + 9 * scale, left + scale, scale, len(lines[1]))
        assert (name, text) == ("ENTRANCE", f"{wall:%Y-%m-%d %H:%M:%S} UTC")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Overlay": "yes"}, "Overlay must be true or false"),
        ({"Overlay": True, "OverlayPosition": "middle"}, "OverlayPosition must be one of top-left"),
        ({"OverlayZone": "Europe/Berlin"}, "OverlayZone must be one of camera, utc"),
        ({"OverlayMilliseconds": 1}, "OverlayMilliseconds must be true or false"),
        ({"Speed": 1}, "Speed 1 is not from 2 to 1000"),
        ({"Speed": 1001}, "Speed 1001 is not from 2 to 1000"),
        ({"Speed": 2.5}, "Speed must be a whole number from 2 to 1000"),
        ({"Speed": True}, "Speed must be a whole number from 2 to 1000"),
        ({"Speed": 4, "Format": "png"}, "Speed does not apply to a still"),
        ({"Format": "gif"}, "choose one of mp4, avi, flv, mov, asf, mkv, jpg, png"),
    ],
)
def test_bad_options_are_a_400_naming_the_field_and_make_no_task(alice, extra, message):
    body = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2)), **extra}
    response = alice.create(**body)
    assert response.status_code == 400, response.json()
    assert message in response.json()["ErrorMessage"]
    assert response.json()["ArchiveTaskId"] is None
    assert not ExportTask.objects.exists()


def test_absent_options_are_the_plain_export(alice, exports_queue, django_capture_on_commit_callbacks):
    _, _, task = create_and_run(
        alice, exports_queue, django_capture_on_commit_callbacks,
        CameraId="1", From=psim(T0), To=psim(T0 + timedelta(seconds=2)),
        Overlay=None, Speed=None,
    )
    assert (task.overlay, task.speed, task.options_text) == (False, None, "")
    assert task.technique == "stream_copy" and "options" not in task.details


def test_export_form_offers_the_options_and_previews_their_cost(users, exports_queue):
    client = Client()
    client.force_login(users["alice"])
    local = "%Y-%m-%d %H:%M:%S"
    form = {"camera": "1", "start": T0.strftime(local), "end": (T0 + timedelta(seconds=4)).strftime(local),
            "format": "mp4", "overlay": "on", "overlay_position": "bottom-right",
            "overlay_zone": "camera", "speed": "4"}
    page = client.get("/export/").content.decode()
    for control in ('name="overlay"', 'name="overlay_position"', 'name="speed"', 'value="jpg"'):
        assert control in page
    preview = client.get("/export/preview/", form).content.decode()
    assert "re-encodes: about" in preview
    still = client.get("/export/preview/", {**form, "format": "png", "speed": ""}).content.decode()
    assert "one png image of the frame on screen at From" in still
    quick = client.post("/export/", {**form, "quick": "last-5"}).context["form"]
    assert (quick["overlay"].value(), quick["overlay_position"].value(), quick["speed"].value()) == (
        True, "bottom-right", "4"
    )
    response = client.post("/export/", {**form, "action": "export"})
    assert response.status_code == 302
    task = ExportTask.objects.get()
    assert (task.overlay, task.overlay_position, task.speed) == (True, "bottom-right", 4)


def test_export_archive_command_takes_the_options(cameras, tmp_path):
    still = tmp_path / "still.png"
    call_command("export_archive", "1", psim(T0 + timedelta(seconds=1.5)), "--output", str(still),
                 stdout=io.StringIO())
    (gray,) = frames_of(still.read_bytes())
    assert synth.frame_wall_time(gray) == T0 + timedelta(seconds=1.48)
    clip = tmp_path / "fast.mkv"
    stdout = io.StringIO()
    call_command("export_archive", "1", psim(T0), psim(T0 + timedelta(seconds=4)), "--speed", "10",
                 "--overlay", "bottom-right", "--output", str(clip), stdout=stdout)
    assert json.loads(stdout.getvalue())["technique"] == "timelapse_overlay_transcode"
    walls = [synth.frame_wall_time(g) for g in frames_of(clip.read_bytes())]
    assert walls == [T0 + 10 * k * FRAME for k in range(10)]
    with pytest.raises(CommandError, match="--speed 1 is not from 2 to 1000"):
        call_command("export_archive", "1", psim(T0), "--speed", "1", "--output", str(clip), "--force")


def test_a_batch_of_stills_is_one_still_per_camera_at_one_instant(
    users, exports_queue, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(users["root"])
    at = T0 + timedelta(seconds=1.5)
    form = {"camera": ["1", "2"], "start": at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "end": (at + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S"), "format": "jpg",
            "action": "export"}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/export/", form).status_code == 302
    run_worker(exports_queue)
    made = ExportTask.objects.order_by("camera__camera_id")
    assert [t.camera.camera_id for t in made] == ["1", "2"]
    assert made[0].batch is not None and made[0].batch == made[1].batch
    for task in made:
        assert task.state == "ReadyForDownload" and task.start == at
        data = (settings_exports_dir() / task.output_path).read_bytes()
        (gray,) = frames_of(data)
        assert synth.frame_wall_time(gray) == T0 + timedelta(seconds=1.48)
        page = client.get(f"/tasks/{task.id}/").content.decode()
        assert 'class="still"' in page and "still (jpg)" in page


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"Overlay": True, "MaxFileSize": 2_000_000},
         "Overlay cannot be combined with MaxFileSize or with a range longer than"),
        ({"Speed": 4, "MaxFileSize": 2_000_000},
         "Speed cannot be combined with MaxFileSize or with a range longer than"),
        ({"Format": "png", "MaxFileSize": 2_000_000},
         "MaxFileSize does not apply to a still"),
    ],
)
def test_options_that_cannot_be_combined_are_refused_not_dropped(alice, extra, message):
    response = alice.create(CameraId="1", From=psim(T0), To=psim(T0 + timedelta(seconds=4)), **extra)
    assert response.status_code == 400, response.json()
    assert message in response.json()["ErrorMessage"]
    assert not ExportTask.objects.exists()


def test_overlay_with_a_range_longer_than_one_part_is_refused(alice, settings):
    settings.PSIMEXPORT_PART_HOURS = 0.001  # 3.6 s: the 4 s range would be exported in parts
    response = alice.create(
        CameraId="1", From=psim(T0), To=psim(T0 + timedelta(seconds=4)), Overlay=True
    )
    assert response.status_code == 400
    assert "longer than 0.001 hours" in response.json()["ErrorMessage"]
    assert not ExportTask.objects.exists()


def test_a_group_carries_the_picture_options_to_every_camera(tokens, users, cameras):
    root = api_support.token_client(tokens["root"])
    response = root.create(
        CameraIds=["1", "2"], From=psim(T0), To=psim(T0 + timedelta(seconds=2)),
        Overlay=True, OverlayZone="utc", Speed=2,
    )
    assert response.status_code == 200, response.json()
    group = ExportTask.objects.filter(batch=response.json()["ArchiveTaskId"])
    assert sorted(group.values_list("camera__camera_id", "overlay", "overlay_zone", "speed")) == [
        ("1", True, "utc", 2), ("2", True, "utc", 2),
    ]
