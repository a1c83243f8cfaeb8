"""Shared fixtures of the API, job and download tests: a tiny real archive, users, tokens,
an API client and a burst worker on the test Redis."""

import base64
import os
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import django_rq
import pytest
from django.contrib.auth.models import User
from django.test import Client  # noqa: F401 (re-exported for the tests)
from rq import SimpleWorker

from exports.archive import index_camera
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import ApiToken, Camera

SPEC = SegmentSpec(width=160, height=120, fps=Fraction(25), acodec=None)
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
SEGMENT_SECONDS = 2
SEGMENTS = 3  # camera "1" records [T0, T0 + 6 s)
FRAME = timedelta(seconds=1 / 25)


def psim(moment: datetime) -> str:
    """A time written the way PSIM's own examples write it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 10000:02d}Z"


@pytest.fixture(scope="session")
def recordings(tmp_path_factory):
    """Frigate-style recordings of cameras "1" (three segments) and "2" (one)."""
    root = tmp_path_factory.mktemp("recordings")
    for index in range(SEGMENTS):
        start = T0 + timedelta(seconds=index * SEGMENT_SECONDS)
        write_segment(frigate_path(root, "1", start), start, SEGMENT_SECONDS, SPEC)
    write_segment(frigate_path(root, "2", T0), T0, SEGMENT_SECONDS, SPEC)
    old = datetime.now().timestamp() - 3600
    for path in root.rglob("*.mp4"):
        os.utime(path, (old, old))
    return root


@pytest.fixture
def cameras(db, recordings):
    one = Camera.objects.create(
        camera_id="1", name="Entrance", archive_path=str(recordings), layout="frigate"
    )
    two = Camera.objects.create(
        camera_id="2", name="Yard", archive_path=str(recordings), layout="frigate"
    )
    index_camera(one)
    index_camera(two)
    return one, two


@pytest.fixture
def users(db, cameras, settings):
    """alice may export camera 1, bob camera 2; root is a superuser."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice = User.objects.create_user("alice", password="alice-secret-pw")
    bob = User.objects.create_user("bob", password="bob-secret-pw")
    root = User.objects.create_superuser("root", password="root-secret-pw")
    cameras[0].allowed_users.add(alice)
    cameras[1].allowed_users.add(bob)
    return {"alice": alice, "bob": bob, "root": root}


@pytest.fixture
def tokens(users):
    return {name: ApiToken.issue(user)[1] for name, user in users.items()}


class ApiClient:
    """Django's test client speaking JSON with a fixed Authorization header."""

    def __init__(self, authorization: str | None = None):
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    def post(self, path, body=None, raw: bytes | None = None, **extra):
        data = raw if raw is not None else __import__("json").dumps(body)
        return self.client.post(
            path, data=data, content_type="application/json", **self.headers, **extra
        )

    def get(self, path, params=None, **extra):
        return self.client.get(path, params or {}, **self.headers, **extra)

    def create(self, **body):
        return self.post("/createarchivetask", body)

    def status(self, task_id, **extra):
        return self.get("/getarchivetaskstatus", {"archivetaskid": str(task_id)}, **extra)


def token_client(key: str) -> ApiClient:
    return ApiClient(f"Token {key}")


def basic_client(username: str, password: str) -> ApiClient:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return ApiClient(f"Basic {raw}")


@pytest.fixture
def alice(tokens):
    return token_client(tokens["alice"])


@pytest.fixture
def bob(tokens):
    return token_client(tokens["bob"])


def run_worker(queue=None) -> None:
    """Run every queued job to completion in this process, as rq's worker would."""
    queue = queue or django_rq.get_queue("exports")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def settings_exports_dir():
    from pathlib import Path

    from django.conf import settings

    return Path(settings.EXPORTS_DIR)
