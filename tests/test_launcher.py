"""`make run`'s launcher, started as a new user would: fresh data dir, no Redis, SQLite."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import psutil
import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_until(process, pattern: str, seconds: float) -> tuple[re.Match, str]:
    deadline, seen = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen += line
        match = re.search(pattern, line)
        if match:
            return match, seen
    raise AssertionError(f"launcher never printed {pattern!r}; output:\n{seen}")


def test_launcher_serves_admin_and_stops_everything_it_started(tmp_path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DATABASE_URL", "TEST_REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        PSIMEXPORT_DATA=str(tmp_path / "data"),
        PORT=str(port),
        PSIMEXPORT_DEMO="0",
        DJANGO_SUPERUSER_USERNAME="operator",
        DJANGO_SUPERUSER_PASSWORD="correct horse battery",
        PYTHONUNBUFFERED="1",
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "psimexport.launcher"],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        redis_line, _ = read_until(launcher, r"embedded Redis \(pid (\d+)\)", 120)
        read_until(launcher, rf"psimexport is running at http://127\.0\.0\.1:{port}/", 120)
        started = [p.pid for p in psutil.Process(launcher.pid).children(recursive=True)]
        started.append(int(redis_line.group(1)))

        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login_url = f"http://127.0.0.1:{port}/admin/login/?next=/admin/"
        page = opener.open(login_url).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": "operator",
             "password": "correct horse battery", "next": "/admin/"}
        ).encode()
        request = urllib.request.Request(login_url, data=form, headers={"Referer": login_url})
        admin_page = opener.open(request).read().decode()
        assert "Site administration" in admin_page

        launcher.send_signal(signal.SIGINT)
        launcher.wait(120)
        assert launcher.returncode == 0
        time.sleep(0.5)
        left = [pid for pid in started if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert left == [], f"processes left running: {left}"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
