"""Server time of each web page with 10,000 export tasks in the history.

Builds a throw-away test database (Django's test-database machinery: SQLite file in the data
dir, or test_<name> on PostgreSQL when DATABASE_URL is set), a small real archive, 10,000
tasks in every state (some in batches), then requests each page through Django's test client
(the whole middleware stack, no network) and prints p50/p95/max and the number of SQL queries.

    .venv/bin/python bench/pages_bench.py [--tasks 10000] [--repeat 40]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/pages_bench.py

Target: every page under 100 ms at p95.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
os.environ.setdefault("PSIMEXPORT_DATA", tempfile.mkdtemp(prefix="psimexport-pages-bench-"))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from exports.archive import index_camera  # noqa: E402
from exports.media.synth import SegmentSpec, frigate_path, write_segment  # noqa: E402
from exports.models import Camera, ExportTask  # noqa: E402

State = ExportTask.State
TARGET_MS = 100


def build_archive(root: Path, now: datetime) -> None:
    """Two cameras, an hour each in 5-minute segments with a gap, 1 fps 160x120."""
    spec = SegmentSpec(width=160, height=120, fps=Fraction(1), acodec=None)
    base = now.replace(second=0, microsecond=0) - timedelta(hours=2)
    for name in ("cam-a", "cam-b"):
        for index in range(12):
            if index == 6:
                continue  # a gap
            start = base + timedelta(minutes=5 * index)
            write_segment(frigate_path(root, name, start), start, 300, spec)
    old = time.time() - 600
    for path in root.rglob("*.mp4"):
        os.utime(path, (old, old))


def populate(task_count: int, archive: Path):
    now = datetime.now(UTC)
    cameras = []
    for index, source in enumerate(("cam-a", "cam-b", "cam-a", "cam-b")):
        camera = Camera.objects.create(
            camera_id=str(index + 1), name=f"Camera {index + 1}", archive_path=str(archive),
            source_name=source, layout="frigate",
        )
        index_camera(camera)
        cameras.append(camera)
    operator = User.objects.create_user("operator", password="bench-operator-pw")
    other = User.objects.create_user("other", password="bench-other-pw")
    cameras[0].allowed_users.add(operator)
    cameras[1].allowed_users.add(operator)
    root = User.objects.create_superuser("root", password="bench-root-pw")
    states = [State.READY] * 6 + [State.FAILED, State.CANCELLED, State.DELETED, State.CREATED]
    rows, batch = [], None
    for i in range(task_count):
        if i % 50 == 0:
            batch = uuid.uuid4()
        start = now - timedelta(hours=2) + timedelta(seconds=i % 3600)
        state = states[i % len(states)]
        rows.append(
            ExportTask(
                camera=cameras[i % len(cameras)],
                batch=batch if i % 50 < 4 else None,
                requested_from=start, start=start, end=start + timedelta(seconds=30),
                format="mp4", state=state, percents=100 if state == State.READY else 0,
                size=123_456 if state == State.READY else None,
                sha256="ab" * 32 if state == State.READY else "",
                technique="stream_copy" if state == State.READY else "",
                requested_by=(operator, other, root)[i % 3], source=ExportTask.Source.PAGE,
                created_at=now - timedelta(minutes=i),
            )
        )
    ExportTask.objects.bulk_create(rows, batch_size=1000)
    return {"operator": operator, "root": root, "cameras": cameras, "now": now}


def measure(client: Client, url: str, repeat: int):
    client.get(url)  # warm caches (templates, thumbnails) once
    times = []
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    # (request_started resets Django's own query log, so count with a wrapper instead)
    with connections["default"].execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, times[-1], len(queries)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()

    # No setup_test_environment(): it instruments template rendering, which a server lacks.
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        with tempfile.TemporaryDirectory(prefix="pages-bench-archive-") as tmp, override_settings(
            STORAGES={**settings.STORAGES, "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
            DATA_DIR=Path(tmp),
            ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
        ):
            archive = Path(tmp) / "archive"
            build_archive(archive, datetime.now(UTC))
            data = populate(args.tasks, archive)
            run(args, data)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(args, data):
    engine = connection.vendor
    print(f"pages bench: {ExportTask.objects.count()} tasks, database {engine}, "
          f"{args.repeat} requests per page (Django test client, full middleware)")
    now = data["now"]
    some = ExportTask.objects.filter(camera=data["cameras"][0]).order_by("-created_at")
    ready = some.filter(state=State.READY).first()
    active_ids = "&".join(f"id={t}" for t in some.values_list("id", flat=True)[:20])
    day = (now - timedelta(days=2)).date().isoformat()
    start = (now - timedelta(minutes=100)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (now - timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M:%S")
    pages = [
        ("cameras", "/"),
        ("export form", "/export/?camera=1"),
        ("export preview", f"/export/preview/?camera=1&camera=2&start={start}&end={end}&format=mp4"),
        ("history page 1", "/tasks/"),
        ("history page 100", "/tasks/?page=100"),
        ("history camera+state", "/tasks/?camera=1&state=Failed"),
        ("history by day", f"/tasks/?day={day}"),
        ("task detail", f"/tasks/{ready.id}/"),
        ("progress json (20 ids)", f"/tasks/progress/?{active_ids}"),
    ]
    print(f"{'user':9} {'page':24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    worst = 0.0
    for who in ("operator", "root"):
        client = Client()
        client.force_login(data[who])
        for name, url in pages:
            p50, p95, peak, queries = measure(client, url, args.repeat)
            worst = max(worst, p95)
            print(f"{who:9} {name:24} {p50:8.1f} {p95:8.1f} {peak:8.1f} {queries:8d}")
    verdict = "OK" if worst < TARGET_MS else "OVER TARGET"
    print(f"worst p95 {worst:.1f} ms (target < {TARGET_MS} ms): {verdict}")


if __name__ == "__main__":
    main()
