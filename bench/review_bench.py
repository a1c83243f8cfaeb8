"""Review page benchmark: seek to first frame, proxy start, server CPU per minute of playback,
page weight - in Debian's Chromium against gunicorn as `make run` starts it.

Run by hand:  .venv/bin/python bench/review_bench.py [--minutes 60] [--seeks 20]

The archive is export_bench's (1080p25 H.264 + AAC, about 4 Mbit/s, 10 s segments; cached in
bench/.cache/). A fresh data dir gets the camera, a user and collected static files; gunicorn
runs with the launcher's settings (gthread, 2 workers x 8 threads).

- seek: time from asking the player for an instant to that frame being presented
  (requestVideoFrameCallback), for N random instants of the archive; p50 and p95.
- proxy start: the same for the first frame through the H.264 proxy (?proxy=1).
- CPU: user+system seconds of all gunicorn processes while the page plays a stretch of
  footage, divided by the minutes of footage played (copy path at 4x, proxy path at 1x).
- page weight: bytes of the page, its CSS and JavaScript (as sent, and uncompressed).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from export_bench import T0, build_archive  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-password-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(data: Path, archive: Path) -> dict:
    env = dict(os.environ, PSIMEXPORT_DATA=str(data), PSIMEXPORT_DEMO="0", DEBUG="false")
    env.pop("DATABASE_URL", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    for args in (
        ["migrate", "--noinput", "-v", "0"],
        ["collectstatic", "--noinput", "-v", "0"],
        ["add_camera", "bench", str(archive), "--layout", "frigate", "--source-name", "bench"],
    ):
        subprocess.run(manage + args, env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    subprocess.run(
        manage
        + [
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            f"User.objects.create_superuser('bench', password='{PASSWORD}')",
        ],
        env=env,
        check=True,
        cwd=ROOT,
    )
    return env


def start_gunicorn(env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "psimexport.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            "2",
            "--threads",
            "8",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def server_cpu(server: subprocess.Popen) -> float:
    process = psutil.Process(server.pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


SEEK = """async (at) => {
  const root = document.getElementById('review');
  const began = performance.now();
  window.psimReview.seek(at, false);
  return await new Promise((resolve) => {
    const check = () => {
      const shown = Number(root.dataset.shown);
      if (shown <= at && at - shown < 40) resolve(performance.now() - began);
      else requestAnimationFrame(check);
    };
    check();
  });
}"""


def open_review(page, base: str, at_ms: float, proxy: bool = False) -> float:
    """Open the page at an instant; milliseconds from navigation to that frame on screen."""
    iso = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000))
        + f".{int(at_ms % 1000):03d}Z"
    )
    began = time.perf_counter()
    page.goto(f"{base}/cameras/bench/review/?t={iso}" + ("&proxy=1" if proxy else ""))
    page.wait_for_function(
        f"Math.abs(Number(document.getElementById('review').dataset.shown) - {at_ms}) < 40",
        timeout=60_000,
    )
    return (time.perf_counter() - began) * 1000


def play_cpu(page, server, start_ms: float, footage_s: float, speed: float) -> float:
    """Server CPU seconds per minute of footage played from `start_ms` at `speed`."""
    page.evaluate(f"window.psimReview.seek({start_ms}, false)")
    page.wait_for_function(
        f"Math.abs(Number(document.getElementById('review').dataset.shown) - {start_ms}) < 40"
    )
    before = server_cpu(server)
    page.evaluate(f"window.psimReview.setSpeed({speed}); window.psimReview.play()")
    page.wait_for_function(
        f"Number(document.getElementById('review').dataset.shown) >= {start_ms + footage_s * 1000}",
        timeout=int(footage_s / speed * 1000 * 4 + 60_000),
    )
    used = server_cpu(server) - before
    page.evaluate("window.psimReview.pause()")
    return used / (footage_s / 60)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--seeks", type=int, default=20)
    parser.add_argument("--play-seconds", type=float, default=60)
    args = parser.parse_args()
    segments = build_archive(args.minutes)
    archive = segments[0].path.parents[3]
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    rng = random.Random(11)
    first_ms = T0.timestamp() * 1000
    span_ms = args.minutes * 60_000
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        env = prepare(Path(tmp), archive)
        port = free_port()
        server = start_gunicorn(env, port)
        base = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.set_default_timeout(60_000)
                page.goto(base + "/accounts/login/")
                page.get_by_label("User name").fill("bench")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(base + "/")

                # 40 ms frames: a random frame start.
                def instant():
                    return first_ms + round(rng.uniform(0, span_ms - 70_000) / 40) * 40

                cold = open_review(page, base, instant())
                weight = page.evaluate("""() => {
                  const entries = [performance.getEntriesByType('navigation')[0],
                                   ...performance.getEntriesByType('resource')]
                    .filter(e => /\\.(css|js)$/.test(new URL(e.name).pathname) || e.entryType === 'navigation');
                  return { sent: entries.reduce((a, e) => a + e.transferSize, 0),
                           decoded: entries.reduce((a, e) => a + e.decodedBodySize, 0),
                           files: entries.map(e => new URL(e.name).pathname) };
                }""")
                seeks = [page.evaluate(SEEK, instant()) for _ in range(args.seeks)]
                copy_cpu = play_cpu(page, server, instant(), args.play_seconds, 4)

                proxy_start = [open_review(page, base, instant(), proxy=True) for _ in range(3)]
                proxy_seeks = [page.evaluate(SEEK, instant()) for _ in range(5)]
                proxy_cpu = play_cpu(page, server, instant(), min(30.0, args.play_seconds), 1)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"archive: {args.minutes} min of 1080p25 H.264+AAC in 10 s segments (export_bench's)")
    print(
        f"page weight: {weight['sent']} bytes sent, {weight['decoded']} bytes uncompressed "
        f"({', '.join(weight['files'])})"
    )
    print(f"open page to first frame (cold): {cold:.0f} ms")
    print(
        f"seek to first frame, {len(seeks)} random seeks: p50 {statistics.median(seeks):.0f} ms, "
        f"p95 {percentile(seeks, 0.95):.0f} ms, max {max(seeks):.0f} ms"
    )
    print(
        f"proxy: open page to first frame p50 {statistics.median(proxy_start):.0f} ms "
        f"(max {max(proxy_start):.0f}); seek p50 {statistics.median(proxy_seeks):.0f} ms, "
        f"max {max(proxy_seeks):.0f} ms"
    )
    print(
        f"server CPU per minute of footage: copy {copy_cpu:.2f} s (played at 4x), "
        f"proxy {proxy_cpu:.2f} s (played at 1x)"
    )


if __name__ == "__main__":
    main()
