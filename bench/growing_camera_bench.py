"""Create latency while the camera's newest segment is being written (issue 10).

    .venv/bin/python bench/growing_camera_bench.py [--rate 20] [--seconds 20] [--baseline REV]

Starts `make run`'s launcher on a throw-away data dir with the demo camera (its recorder
keeps writing the newest segment), then sends an open loop of creates at a fixed rate:
"live" asks for the last 30 s with no To (the newest files are looked at first, within the
1 s budget), "indexed" for a range the index already covers (no look). Each created task is
deleted at once so the worker has nothing to export. Latency is measured from when each
request was due. Prints p50/p99/max per scenario and how many creates got which answer
(a 404 for "the last 30 s" of a camera that is recording is the failure this measures).
--baseline REV runs the same on that git revision first (see bench/api_bench.py).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port, key, path, body) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def open_loop(rate, seconds, send) -> list[float]:
    latencies, threads = [], []
    start = time.monotonic()
    for number in range(int(rate * seconds)):
        due = start + number / rate
        time.sleep(max(0.0, due - time.monotonic()))

        def one(due=due):
            send()
            latencies.append(time.monotonic() - due)

        thread = threading.Thread(target=one)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return latencies


def measure(root: Path, args, label: str) -> None:
    data, port = Path(tempfile.mkdtemp(prefix="psimexport-bench-")), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(PSIMEXPORT_DATA=str(data), PORT=str(port), PSIMEXPORT_DEMO="1",
               DJANGO_SUPERUSER_USERNAME="bench", DJANGO_SUPERUSER_PASSWORD="bench-pw-123456")
    launcher = subprocess.Popen([sys.executable, "-m", "psimexport.launcher"], cwd=root,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in launcher.stdout:
            if "psimexport is running" in line:
                break
        threading.Thread(target=lambda: [None for _ in launcher.stdout], daemon=True).start()
        key = subprocess.run(
            [sys.executable, "manage.py", "create_api_token", "bench"], cwd=root, env=env,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        scenarios = {
            # "From" is recomputed for every request: always the last 30 s.
            "live (no To, newest segment growing)": lambda now: {
                "CameraId": "1", "From": iso(now - timedelta(seconds=30))},
            "indexed (range the index covers)": lambda now: {
                "CameraId": "1", "From": iso(now - timedelta(minutes=8)),
                "To": iso(now - timedelta(minutes=7)),
            },
        }
        for name, body in scenarios.items():
            answers = Counter()

            def send(body=body, answers=answers):
                status, created = call(port, key, "/createarchivetask", body(datetime.now(UTC)))
                answers[status] += 1
                if created.get("ArchiveTaskId"):
                    call(port, key, "/deletearchivetask", {"ArchiveTaskId": created["ArchiveTaskId"]})

            open_loop(args.rate, 2, send)  # warm-up
            answers.clear()
            latencies = sorted(open_loop(args.rate, args.seconds, send))
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            print(f"{label}: {name}: {len(latencies)} creates at {args.rate}/s: p50 "
                  f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                  f"max {latencies[-1] * 1000:.1f} ms (create + delete round trip); answers "
                  f"{dict(sorted(answers.items()))}; load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        launcher.terminate()
        launcher.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--baseline", metavar="REV", help="measure this git revision first")
    args = parser.parse_args()
    if args.baseline:
        from api_bench import checkout

        root = checkout(args.baseline)
        try:
            measure(root, args, f"baseline {args.baseline}")
        finally:
            shutil.rmtree(root, ignore_errors=True)
    measure(BASE_DIR, args, "this tree")


if __name__ == "__main__":
    main()
