"""/download: ranges, validators, signed links, and the states without a file."""

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from exports import signing
from exports.download import parse_range
from exports.models import ExportTask
from tests import api_support
from tests.api_support import T0, ApiClient, psim, run_worker

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

pytestmark = pytest.mark.django_db


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def ready(alice, exports_queue, django_capture_on_commit_callbacks):
    """A finished export of camera 1 and its bytes."""
    with django_capture_on_commit_callbacks(execute=True):
        task_id = alice.create(
            CameraId="1", From=psim(T0), To=psim(T0 + timedelta(seconds=3)), Format="mkv"
        ).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    task = ExportTask.objects.get(id=task_id)
    assert task.state == "ReadyForDownload"
    data = (api_support.settings_exports_dir() / task.output_path).read_bytes()
    return task, data


def download(api: ApiClient, task, **headers):
    return api.get("/download", {"file": str(task.id)}, **headers)


def test_whole_file_with_headers(alice, ready):
    task, data = ready
    response = download(alice, task)
    assert response.status_code == 200
    assert body_of(response) == data
    assert response["Content-Type"] == "video/x-matroska"
    assert response["Content-Length"] == str(len(data))
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == f'"{task.sha256}"'
    assert response["Last-Modified"].endswith("GMT")
    assert response["X-Content-SHA256"] == task.sha256


@pytest.mark.parametrize(
    "header,first,last",
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-50", -50, None),
     ("bytes=10-10", 10, 10), ("bytes=5-999999999", 5, None)],
)
def test_single_range_gets_206_with_exactly_those_bytes(alice, ready, header, first, last):
    task, data = ready
    response = download(alice, task, HTTP_RANGE=header)
    assert response.status_code == 206
    expected = data[first:] if last is None else data[first : last + 1]
    assert body_of(response) == expected
    assert response["Content-Length"] == str(len(expected))
    begin = first if first >= 0 else len(data) + first
    assert response["Content-Range"] == f"bytes {begin}-{begin + len(expected) - 1}/{len(data)}"


def test_unsatisfiable_range_is_416_and_odd_ranges_get_the_whole_file(alice, ready):
    task, data = ready
    response = download(alice, task, HTTP_RANGE=f"bytes={len(data)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(data)}"
    assert "not satisfiable" in response.json()["ErrorMessage"]
    for header in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3"):
        response = download(alice, task, HTTP_RANGE=header)
        assert response.status_code == 200 and body_of(response) == data


def test_etag_revalidation_and_if_range(alice, ready):
    task, data = ready
    etag = download(alice, task)["ETag"]
    assert download(alice, task, HTTP_IF_NONE_MATCH=etag).status_code == 304
    response = download(alice, task, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=etag)
    assert response.status_code == 206
    response = download(alice, task, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"stale"')
    assert response.status_code == 200 and body_of(response) == data


def test_signed_link_works_without_credentials_until_it_expires_and_cannot_be_altered(
    alice, bob, ready
):
    task, data = ready
    url = alice.status(task.id).json()["Url"]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert int(query["expires"]) > time.time() + 3000
    anonymous = Client()
    assert body_of(anonymous.get(parts.path, query)) == data
    for tampered in (
        {**query, "expires": str(int(query["expires"]) + 1)},
        {**query, "signature": "0" * 64},
        {**query, "file": "084b56a5-bd49-4327-82db-9bc911f7ff96"},
    ):
        response = anonymous.get(parts.path, tampered)
        assert response.status_code in (401, 404)
    past = int(time.time()) - 1
    expired = {"file": str(task.id), "expires": past, "signature": signing.signature(task.id, past, signing.file_generation(task))}
    response = anonymous.get(parts.path, expired)
    assert response.status_code == 401 and "expired" in response.json()["ErrorMessage"]
    # Without a signature the link needs credentials, and only the camera's users see it.
    assert anonymous.get(parts.path, {"file": str(task.id)}).status_code == 401
    assert download(bob, task).status_code == 404


def test_not_ready_is_409_deleted_is_410(alice, exports_queue, django_capture_on_commit_callbacks, ready):
    task, _ = ready
    with django_capture_on_commit_callbacks(execute=True):
        waiting = alice.create(CameraId="1", From=psim(T0)).json()["ArchiveTaskId"]
    response = alice.get("/download", {"file": waiting})
    assert response.status_code == 409 and "not ready" in response.json()["ErrorMessage"]
    deleted = alice.post("/deletearchivetask", {"ArchiveTaskId": str(task.id)}).json()
    assert deleted["State"] == "Deleted" and deleted["Url"] is None
    response = download(alice, task)
    assert response.status_code == 410 and "deleted or has expired" in response.json()["ErrorMessage"]
    assert not (api_support.settings_exports_dir() / str(task.id)).exists()


def test_parse_range_rules():
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=-0", 10) == "unsatisfiable"
    assert parse_range("bytes=-20", 10) == (0, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=", 10) is None


def test_url_ignores_forwarded_headers_unless_the_proxy_is_trusted(alice, ready, settings):
    task, _ = ready
    forwarded = {"HTTP_X_FORWARDED_HOST": "evil.example", "HTTP_X_FORWARDED_PROTO": "https"}
    url = alice.status(task.id, **forwarded).json()["Url"]
    assert url.startswith("http://testserver/download?")
    settings.ALLOWED_HOSTS = ["testserver", "exports.example"]
    settings.USE_X_FORWARDED_HOST = True  # what PSIMEXPORT_TRUST_PROXY=true sets
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    forwarded["HTTP_X_FORWARDED_HOST"] = "exports.example"
    url = alice.status(task.id, **forwarded).json()["Url"]
    assert url.startswith("https://exports.example/download?file=")
