"""Input that used to crash a view (a 500) gets a clear 4xx, in the contract's shape on the API."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory

from exports import api
from exports.admin.cameras import CameraForm
from exports.models import Camera, ExportTask, UserPreference
from tests import api_support
from tests.api_support import T0, psim

recordings, cameras, users, tokens = (
    api_support.recordings,
    api_support.cameras,
    api_support.users,
    api_support.tokens,
)
alice = api_support.alice

pytestmark = pytest.mark.django_db

COVERAGE = {"max_segment_seconds": 0, "recorded_seconds": 0, "gap_count": 0}
EDGE_TIMES = [
    "0001-01-01T00:00:00+05:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59Z",
]


def assert_contract_error(response, status=400):
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["State"] == "Failed" and body["ArchiveTaskId"] is None
    assert isinstance(body["ErrorMessage"], str) and body["ErrorMessage"]
    return body


@pytest.mark.parametrize("moment", EDGE_TIMES)
@pytest.mark.parametrize("field", ["From", "To"])
def test_create_with_times_at_the_ends_of_the_calendar_is_a_400(alice, moment, field):
    body = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}
    body[field] = moment
    assert_contract_error(alice.create(**body))
    assert ExportTask.objects.count() == 0


@pytest.mark.parametrize("moment", EDGE_TIMES)
@pytest.mark.parametrize("param", ["from", "to"])
def test_getcameras_with_times_at_the_ends_of_the_calendar_is_a_400(alice, moment, param):
    assert_contract_error(alice.get("/getcameras", {param: moment}))


def test_lone_surrogate_in_camera_id_is_a_400(alice):
    raw = b'{"CameraId": "\\ud800", "From": "2026-11-20T10:00:00Z"}'
    body = assert_contract_error(alice.post("/createarchivetask", raw=raw))
    assert "CameraId" in body["ErrorMessage"]
    raw = b'{"ArchiveTaskId": "\\udfff"}'
    assert alice.post("/deletearchivetask", raw=raw).status_code in (400, 404)


def test_deeply_nested_json_is_a_400(alice):
    raw = b"[" * 20000 + b"]" * 20000
    assert len(raw) < 64 * 1024
    assert_contract_error(alice.post("/createarchivetask", raw=raw))
    raw = b'{"a":' * 10000 + b"1" + b"}" * 10000
    assert_contract_error(alice.post("/deletearchivetask", raw=raw))


def test_chunked_json_body_is_read(users, tokens, exports_queue):
    """gunicorn hands a chunked body over de-chunked, with no Content-Length."""
    payload = json.dumps(
        {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}
    ).encode()
    request = RequestFactory().generic(
        "POST",
        "/createarchivetask",
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {tokens['alice']}",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    request.META.pop("CONTENT_LENGTH", None)
    request.META["wsgi.input"] = io.BytesIO(payload)
    response = api.create_archive_task(request)
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["State"] == "Created"


def test_chunked_body_over_the_limit_is_a_413(users, tokens):
    request = RequestFactory().generic(
        "POST",
        "/createarchivetask",
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {tokens['alice']}",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    request.META.pop("CONTENT_LENGTH", None)
    request.META["wsgi.input"] = io.BytesIO(b" " * (70 * 1024))
    assert api.create_archive_task(request).status_code == 413


@pytest.fixture
def ready(alice, exports_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        task_id = alice.create(
            CameraId="1", From=psim(T0), To=psim(T0 + timedelta(seconds=2))
        ).json()["ArchiveTaskId"]
    api_support.run_worker(exports_queue)
    return ExportTask.objects.get(id=task_id)


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=" + "9" * 5000 + "-", 416),
        ("bytes=0-" + "9" * 5000, 206),
        ("bytes=-" + "9" * 5000, 206),
    ],
)
def test_range_with_thousands_of_digits(alice, ready, header, status):
    response = alice.get("/download", {"file": str(ready.id)}, HTTP_RANGE=header)
    assert response.status_code == status


# -- pages --------------------------------------------------------------------------------------


@pytest.fixture
def page(users, cameras):
    client = Client()
    client.force_login(users["alice"])
    return client


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59Z",
    ],
)
def test_export_form_and_preview_with_times_at_the_ends_of_the_calendar(page, users, zone, value):
    UserPreference.objects.create(user=users["alice"], time_zone=zone)
    form = {"camera": "1", "start": value, "format": "mp4"}
    response = page.post("/export/", form)
    assert response.status_code == 200 and ExportTask.objects.count() == 0
    response = page.post("/export/", {**form, "start": "2026-11-20T10:00:00", "end": value})
    assert response.status_code == 200 and ExportTask.objects.count() == 0
    assert page.get("/export/preview/", form).status_code == 200
    assert page.get("/export/", {"camera": "1", "from": value, "to": value}).status_code == 200
    assert page.post("/export/", {**form, "quick": "around"}).status_code == 200


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "2026-02-30", "x"])
@pytest.mark.parametrize("path", ["/", "/tasks/"])
def test_day_at_the_ends_of_the_calendar(page, users, day, path):
    UserPreference.objects.create(user=users["alice"], time_zone="Asia/Tokyo")
    assert page.get(path, {"day": day}).status_code == 200


@pytest.mark.parametrize(
    "quick", ["last-99999999999", "last-²", "last-", "last--5", "last-0", "around", "x" * 500]
)
def test_odd_quick_ranges_are_ignored_or_refused(page, quick):
    response = page.post(
        "/export/", {"camera": "1", "quick": quick, "around": "99999999999", "start": "x"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("camera_id", ["a/b", "a b", "../x", "a?b", "", "a\\b", "é"])
def test_camera_ids_are_limited_to_a_safe_set_of_characters(camera_id, archive_dir):
    with pytest.raises(CommandError):
        call_command("add_camera", camera_id, str(archive_dir))
    form = CameraForm(
        {
            "camera_id": camera_id,
            "archive_path": str(archive_dir),
            "layout": "auto",
            "timezone": "UTC",
            "enabled": True,
            **COVERAGE,
        }
    )
    assert not form.is_valid() and "camera_id" in form.errors


def test_safe_camera_ids_are_accepted(archive_dir):
    for camera_id in ("1", "cam-7", "front_door", "Server1.Cam:0", "a@b"):
        form = CameraForm(
            {
                "camera_id": camera_id,
                "archive_path": str(archive_dir),
                "layout": "auto",
                "timezone": "UTC",
                "enabled": True,
                **COVERAGE,
            }
        )
        assert form.is_valid(), (camera_id, form.errors)


def test_pages_survive_an_existing_camera_id_with_a_slash(page, users, recordings):
    odd = Camera.objects.create(
        camera_id="site/7",
        name="Odd one",
        archive_path=str(recordings),
        layout="frigate",
        source_name="1",
    )
    odd.allowed_users.add(users["alice"])
    response = page.get("/")
    assert response.status_code == 200 and "Odd one" in response.content.decode()
    assert page.get("/export/", {"camera": "site/7"}).status_code == 200
    assert page.get("/tasks/").status_code == 200
