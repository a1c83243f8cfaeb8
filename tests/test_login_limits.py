"""Failed sign-ins are limited per user name and per address, before any password hashing."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.auth.models import User
from django.test import Client

from exports.models import Camera, ExportTask, LoginFailure
from tests import api_support
from tests.api_support import T0, basic_client, token_client

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)

pytestmark = pytest.mark.django_db


class CountingHasher(MD5PasswordHasher):
    """The real MD5 hasher, counting how many passwords it checked."""

    checked = 0
    _lock = threading.Lock()

    def verify(self, password, encoded):
        with CountingHasher._lock:
            CountingHasher.checked += 1
        return super().verify(password, encoded)


@pytest.fixture
def counting_hasher(users, settings):
    settings.PASSWORD_HASHERS = ["tests.test_login_limits.CountingHasher"]
    CountingHasher.checked = 0
    return CountingHasher


@pytest.fixture
def limits(redis_conn, settings):
    settings.PSIMEXPORT_LOGIN_FAILURES_PER_MINUTE = 10
    return settings


def test_wrong_basic_passwords_get_429_without_hashing_and_good_credentials_still_work(
    users, tokens, counting_hasher, limits
):
    cached = basic_client("alice", "alice-secret-pw")
    assert cached.get("/getcameras").status_code == 200  # verified once, now cached
    counting_hasher.checked = 0
    for attempt in range(10):
        response = basic_client("alice", f"guess-{attempt}").get("/getcameras")
        assert response.status_code == 401
    for attempt in range(5):
        response = basic_client("alice", f"more-{attempt}").get("/getcameras")
        assert response.status_code == 429
        assert 1 <= int(response["Retry-After"]) <= 60
        body = response.json()
        assert body["State"] == "Failed" and "too many failed sign-ins" in body["ErrorMessage"]
    assert counting_hasher.checked == 10
    # Known-good credentials are never refused: a valid token, a cached Basic credential.
    assert token_client(tokens["alice"]).get("/getcameras").status_code == 200
    assert cached.get("/getcameras").status_code == 200
    # The right password is not checked either while the name is locked.
    assert basic_client("alice", "alice-secret-pw-2").get("/getcameras").status_code == 429
    assert counting_hasher.checked == 10


def test_guessed_tokens_are_limited_per_address(users, tokens, limits):
    for attempt in range(10):
        assert token_client(f"guess-{attempt}").get("/getcameras").status_code == 401
    response = token_client("guess-again").get("/getcameras")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    # Another address is not affected; a valid token from the locked address still works.
    other = token_client("guess-elsewhere").get("/getcameras", REMOTE_ADDR="192.0.2.9")
    assert other.status_code == 401
    assert token_client(tokens["bob"]).get("/getcameras").status_code == 200


def test_limits_hold_while_redis_is_down(users, tokens, limits, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    for attempt in range(10):
        assert token_client(f"guess-{attempt}").get("/getcameras").status_code == 401
    assert token_client("guess-again").get("/getcameras").status_code == 429
    assert token_client(tokens["alice"]).get("/getcameras").status_code == 200


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_pages_answer_429_after_too_many_failures(users, counting_hasher, limits, path):
    users["root"].is_staff = True
    users["root"].save()
    client = Client()
    for attempt in range(10):
        response = client.post(path, {"username": "root", "password": f"guess-{attempt}"})
        assert response.status_code == 200
    response = client.post(path, {"username": "root", "password": "root-secret-pw"})
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert counting_hasher.checked == 10
    # Somebody else, elsewhere, logs in as usual.
    other = Client(REMOTE_ADDR="192.0.2.20")
    response = other.post(path, {"username": "bob", "password": "bob-secret-pw"})
    assert response.status_code in (200, 302)  # bob is no staff: the admin says so
    assert path == "/admin/login/" or "_auth_user_id" in other.session


def test_failures_are_kept_for_the_admin(users, limits, client):
    for attempt in range(11):
        basic_client("bob", f"guess-{attempt}").get("/getcameras", REMOTE_ADDR="198.51.100.4")
    failures = LoginFailure.objects.order_by("at", "id")
    assert failures.count() == 10  # the refused 11th was never checked
    assert {(f.username, f.remote_addr, f.kind) for f in failures} == {
        ("bob", "198.51.100.4", "basic")
    }
    assert [f.limit_reached for f in failures] == [False] * 9 + [True]
    client.force_login(users["root"])
    text = client.get("/admin/exports/loginfailure/").content.decode()
    assert "198.51.100.4" in text
    plain = User.objects.create_user("plain", password="x-pw-for-tests", is_staff=True)
    client.force_login(plain)
    assert client.get("/admin/exports/loginfailure/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_of_wrong_passwords_cost_few_hashes_and_tokens_keep_working(
    users, tokens, counting_hasher, limits
):
    camera = Camera.objects.get(camera_id="1")
    task = ExportTask.objects.create(
        camera=camera, requested_from=T0, start=T0, end=T0 + timedelta(seconds=2), format="mp4"
    )
    statuses = []
    done = threading.Event()

    def attack(worker):
        codes = []
        for attempt in range(6):
            response = basic_client("alice", f"w{worker}-{attempt}").get("/getcameras")
            codes.append(response.status_code)
        return codes

    def poll_status():
        api = token_client(tokens["alice"])
        while not done.is_set() or not statuses:
            statuses.append(api.status(task.id).status_code)

    poller = threading.Thread(target=poll_status)
    poller.start()
    with ThreadPoolExecutor(16) as pool:
        codes = [code for result in pool.map(attack, range(16)) for code in result]
    done.set()
    poller.join()
    assert set(codes) <= {401, 429}
    # Without the limit this is 96 password hashes; with it, the limit plus at most one
    # per thread that passed the check while the tenth failure was being counted.
    assert counting_hasher.checked <= 10 + 16
    assert codes.count(429) >= 96 - (10 + 16)
    assert statuses and set(statuses) == {200}


OTHER_PROCESS = """
import os, sys, django
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
django.setup()
from django.test import Client
for attempt in range(10):
    answer = Client(HTTP_HOST="127.0.0.1").get(
        "/getcameras", HTTP_AUTHORIZATION=f"Token other-guess-{attempt}"
    )
    assert answer.status_code == 401, answer.status_code
print(Client(HTTP_HOST="127.0.0.1").get("/getcameras", HTTP_AUTHORIZATION="Token again").status_code)
"""


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_the_limit_holds_across_web_processes(users, tokens, limits, settings):
    """Another web process (a real one) spends the address's ten failures while Redis is
    down; this process then refuses the next guess from that address at once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_jobs import _database_url

    down = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.REDIS_URL = down
    env = {
        **os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": down,
        "PSIMEXPORT_DATA": str(Path(settings.DATA_DIR)), "PSIMEXPORT_LOGIN_FAILURES_PER_MINUTE": "10",
    }
    other = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS], cwd=Path(__file__).resolve().parent.parent,
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.split()[-1] == "429"  # it reached the limit itself
    response = token_client("guess-here").get("/getcameras", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert token_client(tokens["alice"]).get("/getcameras").status_code == 200
    assert LoginFailure.objects.filter(remote_addr="127.0.0.1").count() == 10
