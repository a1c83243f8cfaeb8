"""`make run`: prepare the database and serve psimexport with everything it needs.

Starts, each in its own process group so a Ctrl-C reaches them through this supervisor in
order: an embedded Redis when REDIS_URL is unset, the rq worker(s) with rq's scheduler, the
demo recorder when the demo camera is in use, and gunicorn. On SIGINT/SIGTERM it stops the web
server first, then lets workers finish or cancel their current export, and stops Redis last.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
WORKER_STOP_SECONDS = 60


def manage(*args: str, env: dict) -> None:
    """Run a management command to completion; any failure stops the launch."""
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def manage_lines(*args: str, env: dict) -> list[str]:
    """Like manage(), but keep what the command prints (for the closing banner)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True,
        stdout=subprocess.PIPE, text=True,
    )
    return done.stdout.splitlines()


class Supervisor:
    def __init__(self, env: dict):
        self.env = env
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def start(self, name: str, *command: str) -> None:
        process = subprocess.Popen(command, cwd=BASE_DIR, env=self.env, start_new_session=True)
        self.children.append((name, process))

    def first_exited(self):
        for name, process in self.children:
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop_all(self) -> None:
        # Reverse start order: web server, demo recorder, then workers (which may be exporting).
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                timeout = WORKER_STOP_SECONDS if name.startswith("worker") else 15
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    print(f"psimexport: {name} did not stop in {timeout}s; killing it", flush=True)
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def wait_for_port(host: str, port: int, supervisor: Supervisor, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    while time.monotonic() < deadline:
        if supervisor.first_exited():
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
    if not os.environ.get("REDIS_URL"):
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
        rqworker = (python, "manage.py", "rqworker")
        supervisor.start("worker-1", *rqworker, "exports", "default", "--with-scheduler")
        for number in range(2, settings.PSIMEXPORT_MAX_CONCURRENT + 1):
            supervisor.start(f"worker-{number}", *rqworker, "exports")
        supervisor.start("demo", python, "manage.py", "demo_archive", "--auto", "--follow")
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
        while not supervisor.stopping:
            exited = supervisor.first_exited()
            if exited and exited[0] != "demo":
                print(f"psimexport: {exited[0]} exited with code {exited[1]}; stopping", flush=True)
                code = 1
                break
            time.sleep(0.5)
    finally:
        print("psimexport: stopping", flush=True)
        supervisor.stop_all()
        if redis is not None:
            redis.stop()
        print("psimexport: stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
