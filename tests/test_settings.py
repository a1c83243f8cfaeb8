import pytest
from django.core.exceptions import ImproperlyConfigured

from psimexport.env import envbool, envint, envsecret


def test_envbool_rejects_garbage(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        envbool("X_FLAG")


def test_envbool_reads_common_spellings(monkeypatch):
    monkeypatch.setenv("X_FLAG", "Yes")
    assert envbool("X_FLAG") is True
    monkeypatch.setenv("X_FLAG", "0")
    assert envbool("X_FLAG", True) is False


def test_envint_rejects_non_numbers_and_too_small(monkeypatch):
    monkeypatch.setenv("X_NUM", "12x")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        envint("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        envint("X_NUM", 5, minimum=1)


def test_envsecret_reads_file_variant(monkeypatch, tmp_path):
    secret = tmp_path / "s"
    secret.write_text("hunter2\n")
    monkeypatch.delenv("X_SECRET", raising=False)
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert envsecret("X_SECRET") == "hunter2"


def test_tests_use_their_own_redis(redis_conn):
    redis_conn.set("probe", "1")
    assert redis_conn.get("probe") == b"1"


@pytest.mark.django_db
def test_database_is_migrated():
    from exports.models import Camera

    Camera.objects.create(camera_id="1", archive_path="/tmp")
    assert Camera.objects.get().source_name == "1"
