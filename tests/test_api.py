"""The PSIM JSON API end to end: real Redis, a real rq worker, real files decoded back."""

import io
import json
from datetime import timedelta
from urllib.parse import urlsplit

import av
import pytest
from django.test import Client

from exports.media.synth import frame_wall_time
from exports.models import AuditEvent, ExportTask
from tests import api_support
from tests.api_support import FRAME, T0, ApiClient, basic_client, psim, run_worker, token_client

# Fixtures shared with the other API test files.
recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

pytestmark = pytest.mark.django_db

SIX_FIELDS = {"CameraId", "From", "To", "ArchiveTaskId", "ErrorMessage", "State"}
STATUS_FIELDS = SIX_FIELDS | {"Percents", "Url", "PackageUrl"}


def walls_of(data: bytes) -> list:
    with av.open(io.BytesIO(data)) as container:
        return [
            frame_wall_time(frame.to_ndarray(format="gray"))
            for frame in container.decode(container.streams.video[0])
        ]


def fetch(url: str, client: Client | None = None, **headers):
    parts = urlsplit(url)
    client = client or Client()
    response = client.get(f"{parts.path}?{parts.query}", **headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def create_and_run(api, queue, capture, **body):
    with capture(execute=True):
        response = api.create(**body)
    assert response.status_code == 200, response.json()
    run_worker(queue)
    return response.json()["ArchiveTaskId"]


def test_psim_documented_request_gets_documented_answer_and_a_working_file(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    # PSIM's own example request, its times moved into the test archive.
    start, end = T0 + timedelta(seconds=1), T0 + timedelta(seconds=5)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            "/createarchivetask", {"CameraId": "1", "From": psim(start), "To": psim(end)}
        )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == SIX_FIELDS
    assert body["CameraId"] == "1"
    assert body["From"] == "2026-11-20T10:00:01.000Z"
    assert body["To"] == "2026-11-20T10:00:05.000Z"
    assert body["ErrorMessage"] is None and body["State"] == "Created"
    task_id = body["ArchiveTaskId"]
    assert exports_queue.job_ids == [task_id]

    status = alice.status(task_id).json()
    assert set(status) == STATUS_FIELDS
    assert (status["State"], status["Percents"], status["Url"]) == ("Created", 0, None)

    run_worker(exports_queue)
    status = alice.status(task_id).json()
    assert status["State"] == "ReadyForDownload" and status["Percents"] == 100
    assert status["ErrorMessage"] is None
    assert status["Url"].startswith("http://testserver/download?file=" + task_id)

    # The signed Url works without any credentials.
    response, data = fetch(status["Url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Disposition"] == (
        'attachment; filename="camera-1_2026-11-20T10-00-01Z_2026-11-20T10-00-05Z.mp4"'
    )
    assert int(response["Content-Length"]) == len(data)
    task = ExportTask.objects.get(id=task_id)
    assert response["X-Content-SHA256"] == task.sha256
    walls = walls_of(data)
    assert walls[0] == start and walls[-1] == end - FRAME
    assert len(walls) == 100
    actions = list(AuditEvent.objects.filter(task_id=task_id).values_list("action", flat=True))
    assert sorted(actions) == ["create", "download", "finish", "start"]


@pytest.mark.parametrize("fmt", ["mp4", "avi", "flv", "mov", "asf", "mkv"])
def test_every_format_holds_exactly_the_requested_frames(
    fmt, alice, exports_queue, django_capture_on_commit_callbacks
):
    start, end = T0 + timedelta(seconds=1.52), T0 + timedelta(seconds=2.48)  # across a join
    task_id = create_and_run(
        alice, exports_queue, django_capture_on_commit_callbacks,
        CameraId=1, From=psim(start), To=psim(end), Format=fmt.upper(),
    )
    status = alice.status(task_id).json()
    assert status["State"] == "ReadyForDownload", status["ErrorMessage"]
    response, data = fetch(status["Url"])
    assert response["Content-Disposition"].endswith(f'.{fmt}"')
    walls = walls_of(data)
    assert walls[0] == start and walls[-1] == end - FRAME and len(walls) == 24


def test_to_left_out_means_up_to_the_last_recorded_frame(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        body = alice.post("/createarchivetask", {"cameraid": "1", "from": "2026-11-20T13:00:04+03:00"}).json()
    assert body["From"] == "2026-11-20T10:00:04.000Z"
    assert body["To"] == "2026-11-20T10:00:06.000Z"
    run_worker(exports_queue)
    status = alice.status(body["ArchiveTaskId"]).json()
    walls = walls_of(fetch(status["Url"])[1])
    assert walls[0] == T0 + timedelta(seconds=4) and len(walls) == 50


def test_lenient_input_keys_numbers_fractions_and_unknown_fields(alice, exports_queue):
    response = alice.post(
        "/createarchivetask",
        {"CAMERAID": 1, "FROM": "2026-11-20T10:00:00.123456789Z", "to": "2026-11-20 10:00:02",
         "format": " Mkv ", "Comment": "ignored"},
    )
    body = response.json()
    assert response.status_code == 200, body
    assert (body["CameraId"], body["From"], body["To"]) == (
        "1", "2026-11-20T10:00:00.123Z", "2026-11-20T10:00:02.000Z"
    )
    assert ExportTask.objects.get(id=body["ArchiveTaskId"]).format == "mkv"


# -- errors --------------------------------------------------------------------------------

GOOD = {"CameraId": "1", "From": "2026-11-20T10:00:01Z", "To": "2026-11-20T10:00:03Z"}


def with_(**changes):
    body = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


CREATE_ERRORS = [
    ("not JSON", b"CameraId=1", 400, "not valid JSON"),
    ("empty body", b"", 400, "empty body"),
    ("JSON array", b"[1, 2]", 400, "JSON object, not a JSON array"),
    ("JSON string", b'"hello"', 400, "JSON object"),
    ("bad UTF-8", b'{"CameraId": "\xff"}', 400, "not valid JSON"),
    ("CameraId missing", with_(CameraId=...), 400, "CameraId is required"),
    ("From missing", with_(From=...), 400, "From is required"),
    ("CameraId a list", with_(CameraId=["1"]), 400, "CameraId must be a string"),
    ("CameraId true", with_(CameraId=True), 400, "CameraId must be a string"),
    ("CameraId an object", with_(CameraId={"id": 1}), 400, "CameraId must be a string"),
    ("From a number", with_(From=1718000000), 400, "From must be a string"),
    ("From not a time", with_(From="yesterday"), 400, "is not a time like"),
    ("From impossible date", with_(From="2026-02-30T10:00:00Z"), 400, "not a date and time that exists"),
    ("From hour 25", with_(From="2026-11-20T25:00:00Z"), 400, "not a date and time that exists"),
    ("bad offset", with_(From="2026-11-20T10:00:00+25:00"), 400, "offset '+25:00' does not exist"),
    ("To before From", with_(To="2026-11-20T10:00:00Z"), 400, "To must be after From"),
    ("To equals From", with_(To=GOOD["From"]), 400, "To must be after From"),
    ("range too long", with_(To="2026-11-28T10:00:01Z"), 400, "longer than the 168 hours"),
    ("unknown format", with_(Format="wmv"), 400, "Format 'wmv' is not a known format; choose one of mp4"),
    ("format a number", with_(Format=4), 400, "Format must be a string"),
    ("duplicate keys", b'{"CameraId": "1", "cameraid": "2", "From": "2026-11-20T10:00:01Z"}', 400, "given twice"),
    ("unknown camera", with_(CameraId="99"), 404, "CameraId '99' is not a camera you may export"),
    ("another user's camera", with_(CameraId="2"), 404, "CameraId '2' is not a camera you may export"),
    ("traversal in CameraId", with_(CameraId="../../etc/passwd"), 404, "is not a camera you may export"),
    ("traversal in From", with_(From="../../etc/passwd"), 400, "is not a time like"),
    ("traversal in Format", with_(Format="../mp4"), 400, "is not a known format"),
    ("NUL in CameraId", with_(CameraId="1\x00"), 400, "must not contain control characters"),
    ("no recording in range", with_(From="2026-11-20T11:00:00Z", To="2026-11-20T11:00:05Z"), 404, "no recording"),
    ("no recording after From", with_(From="2026-11-20T11:00:00Z", To=...), 404, "no recording after"),
    ("oversize body", {"CameraId": "1", "From": GOOD["From"], "Pad": "x" * 70_000}, 413, "larger than 64 KiB"),
]


@pytest.mark.parametrize(
    "body,status,message", [case[1:] for case in CREATE_ERRORS], ids=[c[0] for c in CREATE_ERRORS]
)
def test_bad_create_requests_get_a_clear_error_in_the_contract_shape(
    alice, exports_queue, body, status, message
):
    if isinstance(body, bytes):
        response = alice.post("/createarchivetask", raw=body)
    else:
        response = alice.post("/createarchivetask", body)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    assert set(answer) == SIX_FIELDS
    assert answer["ArchiveTaskId"] is None and answer["State"] == "Failed"
    assert message in answer["ErrorMessage"], answer["ErrorMessage"]
    assert ExportTask.objects.count() == 0 and exports_queue.count == 0


def test_other_users_task_is_not_found_for_status_download_and_delete(
    alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    task_id = create_and_run(
        alice, exports_queue, django_capture_on_commit_callbacks, **GOOD
    )
    for response in (
        bob.status(task_id),
        bob.get("/download", {"file": task_id}),
        bob.post("/deletearchivetask", {"ArchiveTaskId": task_id}),
    ):
        assert response.status_code == 404
        assert "no such task" in response.json()["ErrorMessage"]
    assert ExportTask.objects.get(id=task_id).state == "ReadyForDownload"


@pytest.mark.parametrize(
    "params,status,message",
    [
        ({}, 400, "archivetaskid is required"),
        ({"archivetaskid": ""}, 400, "archivetaskid is required"),
        ({"archivetaskid": "not-a-uuid"}, 404, "not a task id"),
        ({"archivetaskid": "../../etc/passwd"}, 404, "not a task id"),
        ({"archivetaskid": "084b56a5-bd49-4327-82db-9bc911f7ff96"}, 404, "no such task"),
    ],
)
def test_bad_status_requests(alice, params, status, message):
    response = alice.get("/getarchivetaskstatus", params)
    assert response.status_code == status
    assert message in response.json()["ErrorMessage"]


def test_wrong_method_and_trailing_slash(alice):
    response = alice.get("/createarchivetask")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "not allowed" in response.json()["ErrorMessage"]
    assert alice.post("/createarchivetask/", GOOD).status_code in (200, 503)


# -- auth --------------------------------------------------------------------------------------


def test_no_or_bad_credentials_get_401_with_a_challenge(users):
    for api in (
        ApiClient(),
        token_client("wrong"),
        basic_client("alice", "wrong"),
        ApiClient("Basic !!!notbase64"),
        ApiClient("Digest whatever"),
        basic_client("alice\x00", "x"),
    ):
        response = api.post("/createarchivetask", GOOD)
        assert response.status_code == 401
        assert "Basic" in response["WWW-Authenticate"]
        assert set(response.json()) == SIX_FIELDS


def test_basic_auth_is_cached_but_a_password_change_takes_effect_at_once(users, exports_queue):
    from exports.auth import basic_cache

    basic_cache.clear()
    api = basic_client("alice", "alice-secret-pw")
    assert api.get("/getcameras").status_code == 200
    assert api.get("/getcameras").status_code == 200  # from the cache
    users["alice"].set_password("a-new-password-1")
    users["alice"].save()
    assert api.get("/getcameras").status_code == 401
    assert basic_client("alice", "a-new-password-1").get("/getcameras").status_code == 200


def test_session_post_needs_csrf(users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["alice"])
    response = client.post("/createarchivetask", json.dumps(GOOD), content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["ErrorMessage"]
    assert client.get("/getcameras").status_code == 200


def test_anonymous_api_when_allowed(settings, cameras, exports_queue):
    response = ApiClient().get("/getcameras")
    assert response.status_code == 401
    settings.PSIMEXPORT_ALLOW_ANONYMOUS = True
    response = ApiClient().get("/getcameras")
    assert [c["CameraId"] for c in response.json()["Cameras"]] == ["1", "2"]
    response = ApiClient().post("/createarchivetask", GOOD)
    assert response.status_code == 200
    task = ExportTask.objects.get()
    assert task.requested_by is None
    assert AuditEvent.objects.get(action="create").username == "(anonymous API)"


def test_getcameras_lists_only_exportable_cameras_with_recorded_intervals(alice):
    response = alice.get(
        "/getcameras", {"from": "2026-11-20T09:59:00Z", "to": "2026-11-20T10:01:00Z"}
    )
    assert response.status_code == 200
    (camera,) = response.json()["Cameras"]
    assert camera["CameraId"] == "1" and camera["Name"] == "Entrance"
    assert camera["FirstRecord"] == "2026-11-20T10:00:00.000Z"
    assert camera["LastRecord"] == "2026-11-20T10:00:06.000Z"
    assert camera["Recorded"] == [
        {"From": "2026-11-20T10:00:00.000Z", "To": "2026-11-20T10:00:06.000Z"}
    ]
    assert alice.get("/getcameras").json()["Cameras"][0]["Recorded"] is None
    assert alice.get("/getcameras", {"from": "soon"}).status_code == 400


def test_healthz_reports_database_redis_workers_and_disk(db, exports_queue):
    response = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["Database"] == "ok" and body["Redis"] == "ok"
    assert body["Workers"] == 0 and body["Status"] == "degraded"
    assert body["DiskFreeBytes"] > 0


def test_a_group_grant_lets_a_user_export(users, cameras, exports_queue):
    from django.contrib.auth.models import Group, User

    from exports.models import ApiToken

    carol = User.objects.create_user("carol", password="carol-secret-pw")
    operators = Group.objects.create(name="operators")
    carol.groups.add(operators)
    api = token_client(ApiToken.issue(carol)[1])
    assert api.create(**GOOD).status_code == 404
    cameras[0].allowed_groups.add(operators)
    assert api.create(**GOOD).status_code == 200
    assert [c["CameraId"] for c in api.get("/getcameras").json()["Cameras"]] == ["1"]


# This module doubles as a URLconf wiring the API's error handlers, as psimexport/urls.py should.
from psimexport.urls import urlpatterns  # noqa: E402,F401

handler400 = "exports.api.handler400"
handler404 = "exports.api.handler404"
handler500 = "exports.api.handler500"


@pytest.mark.urls("tests.test_api")
def test_django_level_errors_on_api_paths_answer_json(alice):
    response = alice.get("/getcameras", HTTP_HOST="evil.example")  # DisallowedHost
    assert response.status_code == 400 and response.json()["ErrorMessage"] == "bad request"
    response = alice.get("/getarchivetaskstatus/extra")
    assert response.status_code == 404 and "no such endpoint" in response.json()["ErrorMessage"]
