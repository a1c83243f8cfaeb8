"""`make run`'s launcher, started as a new user would: fresh data dir, no Redis, SQLite."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import psutil
import pytest

from tests.waiting import process_gone, wait_until

BASE_DIR = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LauncherOutput:
    """The launcher's output, read on a thread of its own: a test that stops reading (while it
    polls /healthz, each poll an access-log line) must not fill the pipe, which would block
    the launcher's children on their next log line."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.position = 0  # where read_until goes on from
        self.closed = False
        self.changed = threading.Condition()
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream) -> None:
        for line in stream:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.closed = True
            self.changed.notify_all()


def read_until(process, pattern: str, seconds: float) -> tuple[re.Match, str]:
    output, deadline = process.output, time.monotonic() + seconds
    with output.changed:
        while True:
            while output.position < len(output.lines):
                line = output.lines[output.position]
                output.position += 1
                match = re.search(pattern, line)
                if match:
                    return match, "".join(output.lines[: output.position])
            left = deadline - time.monotonic()
            if output.closed or left <= 0:
                break
            output.changed.wait(min(left, 1.0))  # woken by the next line
        seen = "".join(output.lines)
    raise AssertionError(f"launcher never printed {pattern!r}; output:\n{seen}")


def launcher_env(tmp_path, port: int) -> dict:
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
    return env


def start_launcher(tmp_path, port: int, stdout=subprocess.PIPE) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "psimexport.launcher"],
        cwd=BASE_DIR, env=launcher_env(tmp_path, port), stdout=stdout,
        stderr=subprocess.STDOUT, text=True,
    )
    if stdout is subprocess.PIPE:
        process.output = LauncherOutput(process.stdout)
    return process


def test_launcher_serves_admin_and_stops_everything_it_started(tmp_path):
    port = free_port()
    launcher = start_launcher(tmp_path, port)
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
        wait_until(lambda: all(map(process_gone, started)), 30, "every child to exit")
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def workers_of(pid: int) -> list[int]:
    """The live rq worker processes (not their work horses) the launcher started."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if "rqworker" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:  # exited (a zombie until the launcher reaps it)
            pass
    return found


def healthz(port: int) -> dict:
    import json

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as answer:  # 503 still says what is down
        try:
            return json.load(answer)
        except ValueError:
            return {"error": f"HTTP {answer.code}"}
    except (OSError, ValueError) as error:  # kept, so a failing wait says why
        return {"error": repr(error)}


def test_supervisor_restarts_what_died_survives_redis_away_and_dies_with_the_launcher(tmp_path):
    """A killed worker is started again; Redis stopped for 14 s does not stop the service;
    and when the launcher itself is SIGKILLed, nothing it started lives on."""
    port = free_port()
    launcher = start_launcher(tmp_path, port)
    try:
        redis_line, _ = read_until(launcher, r"embedded Redis \(pid (\d+)\)", 120)
        read_until(launcher, rf"psimexport is running at http://127\.0\.0\.1:{port}/", 120)
        redis_pid = int(redis_line.group(1))
        before = workers_of(launcher.pid)
        assert len(before) == 2
        # The worker running rq's scheduler (a child process of its own) is the one to kill:
        # its scheduler must not live on as an orphan holding the scheduler lock.
        victim = wait_until(
            lambda: next((pid for pid in before if psutil.Process(pid).children()), None),
            60, "a worker to start rq's scheduler",
        )
        its_children = [p.pid for p in psutil.Process(victim).children(recursive=True)]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: all(map(process_gone, its_children)), 60, "its scheduler to exit")
        wait_until(
            lambda: len(set(workers_of(launcher.pid)) - set(before)) == 1, 60,
            "the killed worker to be started again",
        )
        wait_until(lambda: healthz(port).get("Workers") == 2, 120, "two live workers")

        os.kill(redis_pid, signal.SIGSTOP)  # Redis away for 14 s
        try:
            deadline = time.monotonic() + 14
            while time.monotonic() < deadline:
                assert launcher.poll() is None, "the launcher gave up while Redis was away"
                time.sleep(0.5)
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        seen = []

        def whole():
            # Two live worker processes and Redis answering. /healthz may count a third worker
            # for a while: one that died while Redis was away could not unregister, and its
            # registration lapses only with rq's worker TTL.
            seen.append(healthz(port))
            alive = [pid for pid in workers_of(launcher.pid) if not process_gone(pid)]
            return (
                seen[-1].get("Redis") == "ok"
                and (seen[-1].get("Workers") or 0) >= 2
                and len(alive) == 2
            )

        try:
            wait_until(whole, 180, "the service to be whole again after Redis came back")
        except AssertionError:
            raise AssertionError(f"last /healthz: {seen[-1]}") from None
        assert launcher.poll() is None

        everything = [p.pid for p in descendants(launcher.pid)] + [redis_pid]
        launcher.kill()  # SIGKILL: no handler runs; the children must notice themselves
        launcher.wait(30)
        wait_until(
            lambda: all(map(process_gone, everything)), 60,
            "every process the launcher started to exit",
        )
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
