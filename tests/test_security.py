"""Security rules of the request path: caller address, signed links, error messages, quotas."""

import os
import shutil
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client

from exports import tasks
from exports.archive import index_camera
from exports.models import AuditEvent, Camera, ExportTask, Segment
from tests import api_support
from tests.api_support import T0, psim, run_worker

recordings, cameras, users, tokens = (
    api_support.recordings,
    api_support.cameras,
    api_support.users,
    api_support.tokens,
)
alice, bob = api_support.alice, api_support.bob

pytestmark = pytest.mark.django_db

RANGE = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}


# -- X-Forwarded-For ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded", "recorded"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # A client may send its own X-Forwarded-For; the trusted proxy appends the address it
        # saw, so only the rightmost entry can be believed.
        ("198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("2001:db8::5", "2001:db8::5"),
        ("not-an-address", "127.0.0.1"),
        ("203.0.113.7, <script>", "127.0.0.1"),
        ("1.2.3.4' OR 1=1 --", "127.0.0.1"),
        ("", "127.0.0.1"),
    ],
)
def test_forwarded_for_is_the_rightmost_valid_address_or_the_peer(
    alice, exports_queue, django_capture_on_commit_callbacks, settings, forwarded, recorded
):
    settings.PSIMEXPORT_TRUST_PROXY = True
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post("/createarchivetask", RANGE, HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code == 200, response.json()
    task = ExportTask.objects.get(id=response.json()["ArchiveTaskId"])
    assert task.remote_addr == recorded
    assert AuditEvent.objects.get(task_id=task.id, action="create").remote_addr == recorded


def test_forwarded_for_is_ignored_without_a_trusted_proxy(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post("/createarchivetask", RANGE, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert ExportTask.objects.get(id=response.json()["ArchiveTaskId"]).remote_addr == "127.0.0.1"


# -- signed links and error messages ------------------------------------------------------------


def test_a_signed_link_from_before_a_delete_does_not_work_after_a_retry(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        task_id = alice.create(**RANGE).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    old = urlsplit(alice.status(task_id).json()["Url"])
    anonymous = Client()
    assert (
        anonymous.get(old.path, {k: v[0] for k, v in parse_qs(old.query).items()}).status_code
        == 200
    )
    alice.post("/deletearchivetask", {"ArchiveTaskId": task_id})
    ExportTask.objects.get(id=task_id)  # the row stays: chain of custody
    tasks.retry_task(ExportTask.objects.get(id=task_id))
    run_worker(exports_queue)
    assert alice.status(task_id).json()["State"] == "ReadyForDownload"
    response = anonymous.get(old.path, {k: v[0] for k, v in parse_qs(old.query).items()})
    assert response.status_code == 401
    assert response.json()["State"] == "Failed" and "link" in response.json()["ErrorMessage"]
    fresh = urlsplit(alice.status(task_id).json()["Url"])
    assert fresh.query != old.query
    query = {k: v[0] for k, v in parse_qs(fresh.query).items()}
    assert anonymous.get(fresh.path, query).status_code == 200


def test_error_message_names_segments_relative_to_the_archive(
    alice, exports_queue, django_capture_on_commit_callbacks, cameras, tmp_path
):
    # A copy of camera 1's archive whose middle segment turns out to be damaged.
    root = tmp_path / "archive-copy"
    shutil.copytree(cameras[0].archive_path, root)
    camera = Camera.objects.create(
        camera_id="3", archive_path=str(root), layout="frigate", source_name="1"
    )
    camera.allowed_users.add(User.objects.get(username="alice"))
    index_camera(camera)
    middle = Segment.objects.filter(camera=camera).order_by("start")[1]
    path = root / middle.path
    path.write_bytes(b"\x00junk" * 1000)
    os.utime(path, (middle.mtime, middle.mtime))
    with django_capture_on_commit_callbacks(execute=True):
        task_id = alice.create(
            CameraId="3", From=psim(T0), To=psim(T0 + timedelta(seconds=6))
        ).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    message = alice.status(task_id).json()["ErrorMessage"]
    assert message and middle.path.split("/")[-1] in message
    assert str(root) not in message and str(tmp_path) not in message
    pages = Client()
    pages.force_login(User.objects.get(username="alice"))
    for page in (f"/tasks/{task_id}/", "/tasks/"):
        html = pages.get(page).content.decode()
        assert str(root) not in html and str(tmp_path) not in html, page


# -- quota ------------------------------------------------------------------------------------------


def test_queued_tasks_per_user_are_limited_with_429(
    alice, bob, exports_queue, django_capture_on_commit_callbacks, settings
):
    settings.PSIMEXPORT_MAX_QUEUED_PER_USER = 3
    with django_capture_on_commit_callbacks(execute=True):
        ids = [alice.create(**RANGE).json()["ArchiveTaskId"] for _ in range(3)]
        refused = alice.create(**RANGE)
    assert refused.status_code == 429
    body = refused.json()
    assert body["State"] == "Failed" and body["ArchiveTaskId"] is None
    assert "3" in body["ErrorMessage"] and "queued" in body["ErrorMessage"]
    assert ExportTask.objects.count() == 3
    # Another user is not affected; a finished or cancelled task frees a place.
    with django_capture_on_commit_callbacks(execute=True):
        assert bob.create(CameraId="2", From=psim(T0)).status_code == 200
        alice.post("/deletearchivetask", {"ArchiveTaskId": ids[0]})
        assert alice.create(**RANGE).status_code == 200
