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


def test_only_settings_reads_the_environment():
    """Every variable is read once in psimexport/settings.py through psimexport/env.py's typed
    helpers; elsewhere only Django's bootstrapping and the launcher handing its environment
    to the processes it starts touch os.environ."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    allowed = {
        ("manage.py", 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")'),
        ("psimexport/wsgi.py", 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")'),
        ("psimexport/launcher.py", 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")'),
        ("psimexport/launcher.py", "env = dict(os.environ)"),
    }
    found = set()
    for path in [root / "manage.py", *(root / "psimexport").rglob("*.py"), *(root / "exports").rglob("*.py")]:
        relative = path.relative_to(root).as_posix()
        if relative == "psimexport/env.py":
            continue
        for line in path.read_text().splitlines():
            if re.search(r"\bos\.(environ|getenv|putenv)\b|\benviron\[", line):
                found.add((relative, line.strip()))
    assert found <= allowed, sorted(found - allowed)


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("PSIMEXPORT_JOB_LEASE_SECONDS", "0", "must be at least 1"),
        ("PSIMEXPORT_DB_RETRY_SECONDS", "two minutes", "is not an integer"),
        ("PSIMEXPORT_STALL_SECONDS", "soon", "is not a number"),
    ],
)
def test_a_malformed_job_setting_stops_start_up_naming_the_variable(tmp_path, variable, value, says):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PSIMEXPORT_DATA": str(tmp_path), variable: value}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=Path(__file__).resolve().parent.parent,
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert f"{variable}=" in result.stderr and says in result.stderr
