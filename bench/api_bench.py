"""Latency of the PSIM API under a fixed request rate, against gunicorn as `make run` serves it.

    .venv/bin/python bench/api_bench.py [--rate 200] [--seconds 30] [--redis-url URL]
                                        [--database-url URL] [--baseline REV]

Sets up a throw-away data dir (SQLite unless --database-url, a 3-segment synthetic archive, a
user with a token and a password), starts gunicorn (gthread, 2 workers x 8 threads) on a free
port, and sends an open loop of requests at a fixed rate: latency is measured from when each
request was *due*, so a stall shows up in the figures instead of slowing the sender down.
Scenarios: create with Token auth, status with Token auth, status with Basic auth, each after
2 s of unmeasured warm-up. Prints throughput, p50/p99/max, errors and gunicorn's CPU time per
request. The Redis database given (default: db 12 on the local Redis) is flushed before and
after, since every create queues a job that no worker runs here; a --database-url database is
emptied (manage.py flush) before the run, so every run starts from the same state.

--baseline REV also serves that git revision (from `git archive`, SQLite) and runs every
scenario on it and on this tree in turn, so both are measured under the same load: on a
shared machine the figures of separate runs are not comparable.
"""

import argparse
import base64
import http.client
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
PASSWORD = "bench-password-123"

SETUP = """
import os, sys, django
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
django.setup()
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from django.contrib.auth.models import User
from exports.archive import index_camera
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import ApiToken, Camera
from exports.forms import parse_psim_time
root = Path(sys.argv[1]); t0 = parse_psim_time(sys.argv[2])
spec = SegmentSpec(width=160, height=120, fps=Fraction(25), acodec=None)
for i in range(3):
    start = t0 + timedelta(seconds=2 * i)
    write_segment(frigate_path(root, "1", start), start, 2, spec)
old = __import__("time").time() - 3600
for p in root.rglob("*.mp4"):
    os.utime(p, (old, old))
camera = Camera.objects.create(camera_id="1", name="Bench", archive_path=str(root), layout="frigate")
index_camera(camera)
user = User.objects.create_user("bench", password=sys.argv[3])
camera.allowed_users.add(user)
print(ApiToken.issue(user)[1])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not come up")


def server_cpu_seconds(master_pid: int) -> float:
    """User + system CPU of gunicorn's master and workers (from /proc), to report CPU per
    request: a figure that stays meaningful when other work shares the machine."""
    pids = [master_pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()]
    except OSError:
        return float("nan")
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def call(port, method, path, body, headers) -> dict:
    """One request on a fresh connection, retried while gunicorn's workers come up."""
    for _ in range(50):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, path, body=body, headers=headers)
            return json.loads(conn.getresponse().read())
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    raise SystemExit(f"{method} {path} keeps failing")


def run_scenario(port, rate, seconds, make_request, threads=32):
    """Open-loop load: request i is due at start + i / rate; latency counts from then."""
    total = int(rate * seconds)
    work: queue.Queue = queue.Queue()
    results = []
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while (item := work.get()) is not None:
            due, (method, path, body, headers) = item
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            with lock:
                results.append((time.monotonic() - due, status))

    pool = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start = time.monotonic() + 0.5
    for index in range(total):
        work.put((start + index / rate, make_request(index)))
    for _ in pool:
        work.put(None)
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - start
    latencies = sorted(r[0] * 1000 for r in results)
    errors = sum(1 for r in results if not 200 <= r[1] < 300)
    return {
        "requests": len(results),
        "throughput": len(results) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
        "errors": errors,
    }


def start_server(root: Path, args, label: str) -> dict:
    """A throw-away data dir with the synthetic archive, a user, a token and one finished
    task, served by gunicorn from the checkout at `root`."""
    data = Path(tempfile.mkdtemp(prefix=f"psimexport-bench-{label}-"))
    env = {
        **os.environ,
        "PSIMEXPORT_DATA": str(data),
        "REDIS_URL": args.redis_url,
        "PSIMEXPORT_MIN_FREE_BYTES": "0",
        # Latency, not the per-user quota: every create of the run is the same user's.
        "PSIMEXPORT_MAX_QUEUED_PER_USER": "1000000000",
        "DEBUG": "false",
    }
    env.pop("DATABASE_URL", None)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    manage = [PYTHON, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=root, env=env, check=True)
    if args.database_url:
        subprocess.run([*manage, "flush", "--noinput", "-v0"], cwd=root, env=env, check=True)
    token = subprocess.run(
        [PYTHON, "-c", SETUP, str(data / "recordings"), T0.isoformat(), PASSWORD],
        cwd=root, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [str(BASE_DIR / ".venv/bin/gunicorn"), "psimexport.wsgi", "-k", "gthread",
         "--threads", "8", "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=root, env=env,
    )
    wait_for(port)
    token_headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    basic = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    # One finished task to ask the status of (a burst worker runs it).
    body = json.dumps({"CameraId": "1", "From": "2026-11-20T10:00:01Z", "To": "2026-11-20T10:00:03Z"})
    task_id = call(port, "POST", "/createarchivetask", body, token_headers)["ArchiveTaskId"]
    subprocess.run([*manage, "rqworker", "exports", "--burst"], cwd=root, env=env,
                   check=True, capture_output=True)
    state = call(port, "GET", f"/getarchivetaskstatus?archivetaskid={task_id}", None,
                 token_headers)["State"]
    return {"label": label, "data": data, "port": port, "server": server, "state": state,
            "token": token_headers, "basic": {"Authorization": f"Basic {basic}"},
            "status": f"/getarchivetaskstatus?archivetaskid={task_id}"}


def scenarios(site: dict) -> list:
    def create(index):
        start = T0 + timedelta(milliseconds=index % 4000)
        payload = {"CameraId": "1", "From": start.isoformat().replace("+00:00", "Z"),
                   "To": (start + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")}
        return "POST", "/createarchivetask", json.dumps(payload), site["token"]

    return [
        ("create (Token)", create),
        ("status (Token)", lambda i: ("GET", site["status"], None, site["token"])),
        ("status (Basic)", lambda i: ("GET", site["status"], None, site["basic"])),
    ]


def checkout(rev: str) -> Path:
    """The tree of a git revision in a temporary folder, using this checkout's .venv."""
    root = Path(tempfile.mkdtemp(prefix="psimexport-bench-baseline-"))
    archive = subprocess.run(["git", "archive", rev], cwd=BASE_DIR, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    (root / ".venv").symlink_to(BASE_DIR / ".venv")
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--database-url", help="default: SQLite in a throw-away data dir")
    parser.add_argument("--baseline", metavar="REV",
                        help="also serve this git revision and measure it in turn with this tree")
    args = parser.parse_args()
    if args.baseline and args.database_url:
        parser.error("--baseline needs SQLite (each tree gets its own database)")

    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    roots = [("this tree", BASE_DIR)]
    if args.baseline:
        roots.insert(0, (f"baseline {args.baseline}", checkout(args.baseline)))
    sites = []
    try:
        for label, root in roots:
            sites.append(start_server(root, args, label))
        print(f"gunicorn gthread 2x8, {args.database_url or 'SQLite'}, Redis {args.redis_url}; "
              f"{args.rate:g} req/s for {args.seconds:g} s each; status of a {sites[-1]['state']} task")
        print(f"{'scenario':<16} {'tree':<20} {'requests':>8} {'req/s':>7} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'max ms':>7} {'errors':>6} {'cpu ms':>7} {'load':>5}")
        for index in range(3):
            # Each scenario on every tree in turn, so they share the machine's conditions.
            for site in sites:
                name, make = scenarios(site)[index]
                # Warm-up, not measured: both gunicorn workers load their code and check the
                # Basic password once (PBKDF2, deliberately slow; then cached for a minute).
                run_scenario(site["port"], args.rate, 2, make)
                cpu_before = server_cpu_seconds(site["server"].pid)
                r = run_scenario(site["port"], args.rate, args.seconds, make)
                cpu_ms = (server_cpu_seconds(site["server"].pid) - cpu_before) * 1000 / r["requests"]
                print(f"{name:<16} {site['label'][:20]:<20} {r['requests']:>8} "
                      f"{r['throughput']:>7.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                      f"{r['max_ms']:>7.1f} {r['errors']:>6} {cpu_ms:>7.2f} "
                      f"{os.getloadavg()[0]:>5.1f}", flush=True)
        print("targets: status p99 <= 20 ms, create p99 <= 50 ms, no errors; "
              "cpu ms = gunicorn's CPU per request; load = 1-minute load average after the run")
    finally:
        for site in sites:
            site["server"].terminate()
            site["server"].wait(10)
            shutil.rmtree(site["data"], ignore_errors=True)
        if args.baseline:
            shutil.rmtree(roots[0][1], ignore_errors=True)
        redis.Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    main()
