"""`make run`: prepare the database and serve psimexport with everything it needs.

Starts an embedded Redis when REDIS_URL is unset, the rq workers (each serving the
maintenance queue first, with rq's scheduler), the demo recorder when the demo camera is in
use, and gunicorn, and supervises them: a child that dies is started again after a pause that
doubles with each quick death (1 s up to 30 s), so one dead worker or a Redis gone for a
while never stops the service. On SIGINT/SIGTERM it stops the web server first, then lets
workers finish or cancel their current export, and stops Redis last. If the launcher itself
is killed outright, every child dies with it (PR_SET_PDEATHSIG, psimexport/lifeline.py).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from psimexport.lifeline import popen_hook

BASE_DIR = Path(__file__).resolve().parent.parent
WORKER_STOP_SECONDS = 60
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
# A child that ran this long before dying starts again at once, with the backoff reset.
STABLE_SECONDS = 60


def say(message: str) -> None:
    print(f"psimexport: {message}", flush=True)


def manage(*args: str, env: dict) -> None:
    """Run a management command to completion; any failure stops the launch."""
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True,
        preexec_fn=popen_hook(),  # noqa: PLW1509 - the launcher has no threads
    )


class Child:
    """One supervised process and its restart schedule."""

    def __init__(self, name: str, command: tuple[str, ...], done_when_ok: bool = False):
        self.name = name
        self.command = command
        # The demo recorder exits 0 at once when the demo camera is not in use: that is done.
        self.done_when_ok = done_when_ok
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.backoff = BACKOFF_FIRST
        self.restart_at: float | None = None

    def spawn(self, env: dict) -> None:
        # A session of its own: a Ctrl-C on the terminal reaches the children only through
        # the launcher, in order. popen_hook: the child dies with the launcher.
        self.process = subprocess.Popen(
            self.command, cwd=BASE_DIR, env=env, start_new_session=True,
            preexec_fn=popen_hook(),  # noqa: PLW1509 - the launcher has no threads
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def schedule_restart(self, now: float) -> float:
        """When it died: pick when to start it again; returns the pause."""
        if now - self.started_at >= STABLE_SECONDS:
            self.backoff = BACKOFF_FIRST
        pause = self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.restart_at = now + pause
        return pause


def manage_lines(*args: str, env: dict) -> list[str]:
    """Like manage(), but keep what the command prints (for the closing banner)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True,
        stdout=subprocess.PIPE, text=True,
        preexec_fn=popen_hook(),  # noqa: PLW1509 - the launcher has no threads
    )
    return done.stdout.splitlines()


class Supervisor:
    def __init__(self, env: dict):
        self.env = env
        self.children: list[Child] = []
        self.stopping = False

    def start(self, name: str, *command: str, done_when_ok: bool = False) -> None:
        child = Child(name, command, done_when_ok)
        child.spawn(self.env)
        self.children.append(child)

    def exited(self, name: str) -> bool:
        return any(c.name == name and not c.running() for c in self.children)

    def pids(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self.children if c.running()}

    def tend(self) -> None:
        """Start again what died, each after its pause."""
        now = time.monotonic()
        for child in self.children:
            if child.running() or self.stopping:
                continue
            if child.done_when_ok and child.process.returncode == 0:
                continue
            if child.restart_at is None:
                pause = child.schedule_restart(now)
                say(f"{child.name} exited with code {child.process.returncode}; "
                    f"starting it again in {pause:.0f} s")
            elif now >= child.restart_at:
                child.spawn(self.env)
                say(f"{child.name} started again (pid {child.process.pid})")

    def stop_all(self) -> None:
        # Reverse start order: web server, demo recorder, then workers (which may be exporting).
        for child in reversed(self.children):
            process = child.process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                timeout = WORKER_STOP_SECONDS if child.name.startswith("worker") else 15
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    say(f"{child.name} did not stop in {timeout}s; killing it")
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def tend_redis(redis, state: dict) -> None:
    """Start the embedded Redis again if it died (the workers reconnect to the same socket)."""
    if redis is None or redis.alive():
        return
    now = time.monotonic()
    if now < state.get("retry_at", 0):
        return
    say("the embedded Redis stopped; starting it again")
    try:
        redis.start()
    except RuntimeError as error:
        state["retry_at"] = now + BACKOFF_MAX
        say(str(error))


def wait_for_port(host: str, port: int, supervisor: Supervisor, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    while time.monotonic() < deadline:
        if supervisor.exited("web"):
            return False
        try:
            with socket.create_connection((connect_host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
    sys.path.insert(0, str(BASE_DIR))
    from django.conf import settings

    settings.DATA_DIR  # noqa: B018 -- read the configuration now: a bad value fails here
    env = dict(os.environ)
    python = sys.executable

    manage("migrate", "--noinput", env=env)
    manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
    login_lines = manage_lines("ensure_superuser", env=env)
    manage("demo_archive", "--auto", env=env)

    redis = None
    if settings.START_EMBEDDED_REDIS:
        from psimexport.embedded_redis import EmbeddedRedis

        redis = EmbeddedRedis(settings.DATA_DIR / "redis")
        env["REDIS_URL"] = redis.url
        print(f"psimexport: started an embedded Redis (pid {redis.pid}) at {redis.url}", flush=True)

    supervisor = Supervisor(env)

    def request_stop(signum, _frame):
        supervisor.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    code = 0
    try:
        manage("start_maintenance", env=env)
        rqworker = (python, "manage.py", "rqworker", "maintenance", "exports", "default")
        # Each may run rq's scheduler; one holds its lock, the others take over if it dies.
        for number in range(1, settings.PSIMEXPORT_MAX_CONCURRENT + 1):
            supervisor.start(f"worker-{number}", *rqworker, "--with-scheduler")
        supervisor.start(
            "demo", python, "manage.py", "demo_archive", "--auto", "--follow", done_when_ok=True
        )
        bind = f"[{settings.HOST}]:{settings.PORT}" if ":" in settings.HOST else f"{settings.HOST}:{settings.PORT}"
        supervisor.start(
            "web",
            python, "-m", "gunicorn", "psimexport.wsgi",
            "--bind", bind, "--worker-class", "gthread", "--workers", "2", "--threads", "8",
            "--graceful-timeout", "20", "--access-logfile", "-",
        )
        if wait_for_port(settings.HOST, settings.PORT, supervisor):
            from psimexport.banner import banner, wait_until_serving

            host = f"[{settings.HOST}]" if ":" in settings.HOST else settings.HOST
            connect = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(settings.HOST, host)
            wait_until_serving(
                f"http://{connect}:{settings.PORT}/", settings.PSIMEXPORT_MAX_CONCURRENT,
                alive=lambda: not supervisor.stopping,
            )
            print(banner(f"http://{host}:{settings.PORT}/", login_lines), flush=True)
        redis_state: dict = {}
        while not supervisor.stopping:
            tend_redis(redis, redis_state)
            supervisor.tend()
            time.sleep(0.5)
    finally:
        say("stopping")
        supervisor.stop_all()
        if redis is not None:
            redis.stop()
        say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
