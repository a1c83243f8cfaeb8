import os
import uuid

import django_rq
import pytest
import redis
from django.conf import settings


@pytest.fixture
def redis_conn():
    """The test Redis database, flushed before and after the test."""
    conn = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def exports_queue(redis_conn):
    """The rq queue exports run on, emptied (its Redis database is flushed around the test)."""
    queue = django_rq.get_queue("exports")
    queue.empty()
    return queue


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, settings):
    """Each test writes exports into its own folder."""
    settings.EXPORTS_DIR = tmp_path / "exports-out"
    yield


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    """Tests run without collectstatic, so no hashed-name manifest exists."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_login_limits(monkeypatch):
    """Failed sign-ins of one test never count against the next (fresh counter keys)."""
    from exports import throttle

    monkeypatch.setattr(throttle, "KEY_PREFIX", f"psimexport:loginfail:{uuid.uuid4().hex}:")
    throttle.limiter.local.clear()
    throttle.limiter._redis_down_until = 0.0


@pytest.fixture
def archive_dir(tmp_path):
    path = tmp_path / "archive"
    path.mkdir()
    return path


def pytest_report_header(config):
    return [f"database: {settings.DATABASES['default']['ENGINE']}"]
