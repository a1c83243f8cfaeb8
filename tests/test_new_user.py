"""What a new user meets first: `make run`'s install and closing lines, and manage.py on a data
dir that has no database yet."""

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def clean_env(**extra) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL", "TEST_REDIS_URL", "DJANGO_SETTINGS_MODULE")
        and not key.startswith("DJANGO_SUPERUSER_")
    }
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def planned_commands(target: str, tmp_path) -> list[str]:
    """The commands `make TARGET` would run on a machine without a venv (make -n runs nothing)."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_make_run_installs_the_server_without_the_dev_tools(tmp_path):
    installs = [
        line
        for line in planned_commands("run", tmp_path)
        if "pip install" in line and " -e " in line
    ]
    assert installs and all("[dev]" not in line for line in installs)
    dev_installs = [line for line in planned_commands("test", tmp_path) if "[dev]" in line]
    assert dev_installs


def test_manage_py_without_a_database_says_what_to_run(tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "index_archive"],
        cwd=BASE_DIR,
        env=clean_env(PSIMEXPORT_DATA=str(tmp_path / "fresh")),
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "no database yet" in done.stderr
    assert "make run" in done.stderr and "manage.py migrate" in done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_make_run_ends_with_the_address_user_name_and_new_password(tmp_path):
    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "psimexport.launcher"],
        cwd=BASE_DIR,
        env=clean_env(PSIMEXPORT_DATA=str(tmp_path / "data"), PORT=str(port), PSIMEXPORT_DEMO="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        # The banner is framed by two rules; read up to the closing one.
        rules = 0
        while rules < 2:
            line = launcher.stdout.readline()
            assert line or launcher.poll() is None, "launcher ended:\n" + "".join(lines)
            lines.append(line)
            rules += line.startswith("=" * 72)
        opening = max(i for i, line in enumerate(lines[:-1]) if line.startswith("=" * 72))
        before, closing = "".join(lines[:opening]), "".join(lines[opening:])
        assert f"psimexport is running at http://127.0.0.1:{port}/" in closing
        assert "User name: admin" in closing
        password = re.search(r"Password:\s+(\S+)", closing).group(1)
        assert password not in before  # shown once, at the end, not in the middle of the log
        # Everything started before the banner: a worker is up and the site serves.
        assert "Listening on" in before or "Worker" in before

        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login_url = f"http://127.0.0.1:{port}/admin/login/?next=/admin/"
        page = opener.open(login_url).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": token,
                "username": "admin",
                "password": password,
                "next": "/admin/",
            }
        ).encode()
        request = urllib.request.Request(login_url, data=form, headers={"Referer": login_url})
        assert "Site administration" in opener.open(request).read().decode()
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.communicate()
