"""One rule decides who may see a camera and its tasks, on every page and API endpoint.

The test walks the URLconf of the pages and the API: every named URL must be in PROBES (so a
new view cannot skip this test), and each probe is run as a user without a grant (404, or
for lists: not listed), with a direct grant and with a group grant (access).
"""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from exports.models import ApiToken, ExportTask, Segment
from tests import api_support
from tests.api_support import T0, psim, run_worker

recordings, cameras = api_support.recordings, api_support.cameras

pytestmark = pytest.mark.django_db

# No camera or task in them (verify: an upload is checked against what the user may see).
PUBLIC = {"api-openapi", "api-healthz", "preferences", "signing-keys", "verify"}


APP_URLCONFS = ("exports.api_urls", "exports.page_urls")


def _names(patterns):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _names(entry.url_patterns)
        elif isinstance(entry, URLPattern) and entry.name:
            yield entry.name


def app_url_names() -> set:
    """Every named URL the exports app serves (pages and JSON API), from the URLconf."""
    names = set()
    for entry in get_resolver().url_patterns:
        module = getattr(entry, "urlconf_module", None)
        if getattr(module, "__name__", module) in APP_URLCONFS:
            names |= set(_names(entry.url_patterns))
    return names


class World:
    """Camera 1, a finished export of it in a batch, and a queued one to act on."""

    def __init__(self, ready, queued):
        self.ready, self.queued = ready, queued

    def page(self, user):
        client = Client()
        client.force_login(user)
        return client

    def api(self, user):
        key = ApiToken.issue(user)[1]
        return Client(HTTP_AUTHORIZATION=f"Token {key}")


def body(response) -> str:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return raw.decode("latin-1")


def _json_post(client, path, data):
    return client.post(path, json.dumps(data), content_type="application/json")


# name -> (how to call it, what "no access" looks like). A list endpoint answers 200 either
# way: there, no access means the camera or task is simply absent.
def probes(world):
    ready, queued = world.ready, world.queued
    range_ = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}
    start = (T0 + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "api-create": ("api", lambda c: _json_post(c, "/createarchivetask", range_), "404"),
        "api-status": (
            "api",
            lambda c: c.get("/getarchivetaskstatus", {"archivetaskid": ready.id}),
            "404",
        ),
        "api-download": ("api", lambda c: c.get("/download", {"file": ready.id}), "404"),
        "api-delete": (
            "api",
            lambda c: _json_post(c, "/deletearchivetask", {"ArchiveTaskId": str(queued.id)}),
            "404",
        ),
        "api-keep": (
            "api",
            lambda c: _json_post(c, "/keeparchivetask", {"ArchiveTaskId": str(ready.id), "Keep": False}),
            "404",
        ),
        "api-cameras": ("api", lambda c: c.get("/getcameras"), '"CameraId": "1"'),
        "cameras": ("page", lambda c: c.get("/"), "Entrance"),
        "camera-thumbnail": ("page", lambda c: c.get("/cameras/1/thumbnail.jpg"), "404"),
        "export": ("page", lambda c: c.get("/export/"), "Entrance"),
        "export-preview": (
            "page",
            lambda c: c.get("/export/preview/", {"camera": "1", "start": start}),
            "Entrance",
        ),
        "tasks": ("page", lambda c: c.get("/tasks/"), str(ready.id)),
        "task-progress": (
            "page",
            lambda c: c.get("/tasks/progress/", {"id": ready.id}),
            str(ready.id),
        ),
        "batch-zip": ("page", lambda c: c.get(f"/tasks/batch/{ready.batch}/zip/"), "404"),
        "task-detail": ("page", lambda c: c.get(f"/tasks/{ready.id}/"), "404"),
        "task-package": ("page", lambda c: c.get(f"/tasks/{ready.id}/package/"), "404"),
        "batch-package": ("page", lambda c: c.get(f"/tasks/batch/{ready.batch}/package/"), "404"),
        "task-download": ("page", lambda c: c.get(f"/tasks/{ready.id}/download/"), "404"),
        "task-parts-zip": ("page", lambda c: c.get(f"/tasks/{ready.id}/parts.zip"), "404"),
        "task-cancel": ("page", lambda c: c.post(f"/tasks/{queued.id}/cancel/"), "404"),
        "task-delete": ("page", lambda c: c.post(f"/tasks/{queued.id}/delete/"), "404"),
        "task-retry": ("page", lambda c: c.post(f"/tasks/{queued.id}/retry/"), "404"),
        "task-keep": ("page", lambda c: c.post(f"/tasks/{ready.id}/keep/", {"keep": "0"}), "404"),
        "task-play": ("page", lambda c: c.get(f"/tasks/{ready.id}/play/"), "404"),
        "review": ("page", lambda c: c.get("/cameras/1/review/"), "404"),
        "review-index": (
            "page",
            lambda c: c.get(
                "/cameras/1/review/index.json",
                {"from": psim(T0), "to": psim(T0 + timedelta(minutes=1))},
            ),
            "404",
        ),
        "review-frame": (
            "page",
            lambda c: c.get("/cameras/1/review/frame.jpg", {"t": psim(T0 + timedelta(seconds=1))}),
            "404",
        ),
        "review-piece": (
            "page",
            lambda c: c.get(f"/cameras/1/review/piece/{first_segment_id()}/0.mp4"),
            "404",
        ),
    }


def first_segment_id() -> int:
    return Segment.objects.filter(camera__camera_id="1").order_by("start").first().pk


@pytest.fixture
def world(cameras, exports_queue, django_capture_on_commit_callbacks, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    root = User.objects.create_superuser("root", password="root-secret-pw")
    key = ApiToken.issue(root)[1]
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    with django_capture_on_commit_callbacks(execute=True):
        ready_id = _json_post(
            api,
            "/createarchivetask",
            {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))},
        ).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    ready = ExportTask.objects.get(id=ready_id)
    assert ready.state == ExportTask.State.READY
    ready.batch = ready.id
    ready.save(update_fields=["batch"])
    queued = ExportTask.objects.create(
        camera=cameras[0],
        requested_from=T0,
        start=T0,
        end=T0 + timedelta(seconds=2),
        format="mp4",
        state=ExportTask.State.FAILED,
    )
    return World(ready, queued)


def test_every_page_and_endpoint_is_probed():
    names = app_url_names()
    assert "api-status" in names and "task-detail" in names  # the walk found both URLconfs
    assert names - PUBLIC == set(probes(World(ExportTask(), ExportTask())))


def test_without_a_grant_every_page_and_endpoint_hides_the_camera_and_its_tasks(world):
    outsider = User.objects.create_user("outsider", password="outsider-pw")
    for name, (kind, call, hidden) in probes(world).items():
        client = world.api(outsider) if kind == "api" else world.page(outsider)
        response = call(client)
        if hidden == "404":
            assert response.status_code == 404, (name, response.status_code)
            if kind == "api":
                assert response.json()["State"] == "Failed", name
        else:
            assert response.status_code == 200, (name, response.status_code)
            assert hidden not in body(response), name
    world.queued.refresh_from_db()
    assert world.queued.state == ExportTask.State.FAILED  # nothing was done to it
    assert ExportTask.objects.count() == 2


@pytest.mark.parametrize("grant", ["direct", "group"])
def test_a_direct_or_group_grant_opens_every_page_and_endpoint(world, cameras, grant):
    user = User.objects.create_user(f"{grant}-user", password="granted-pw")
    # May set legal holds too, so the hold probes reach past the permission to the task.
    user.user_permissions.add(Permission.objects.get(codename="keep_exporttask"))
    if grant == "direct":
        cameras[0].allowed_users.add(user)
    else:
        group = Group.objects.create(name="shift")
        user.groups.add(group)
        cameras[0].allowed_groups.add(group)
    for name, (kind, call, shown) in probes(world).items():
        client = world.api(user) if kind == "api" else world.page(user)
        response = call(client)
        assert response.status_code in (200, 206, 302), (name, response.status_code)
        if shown != "404":
            assert shown in body(response), name


def test_a_disabled_camera_is_hidden_even_with_a_grant(world, cameras):
    user = User.objects.create_user("granted", password="granted-pw")
    cameras[0].allowed_users.add(user)
    cameras[0].enabled = False
    cameras[0].save()
    response = world.api(user).get("/getarchivetaskstatus", {"archivetaskid": world.ready.id})
    assert response.status_code == 404
    assert world.page(user).get(f"/tasks/{world.ready.id}/").status_code == 404


def test_every_page_and_endpoint_asks_the_one_rule(world, cameras, monkeypatch):
    """Change the rule and every view follows: none keeps a copy of its own."""
    from exports.models import CameraQuerySet

    user = User.objects.create_user("granted", password="granted-pw")
    cameras[0].allowed_users.add(user)
    monkeypatch.setattr(CameraQuerySet, "restrict", lambda self, user: self.none())
    for name, (kind, call, hidden) in probes(world).items():
        client = world.api(user) if kind == "api" else world.page(user)
        response = call(client)
        if hidden == "404":
            assert response.status_code == 404, (name, response.status_code)
        else:
            assert hidden not in body(response), name
