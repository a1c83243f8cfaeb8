"""Archive index benchmark: first-index rate, unchanged re-scan of 100,000 segments, and
segments_covering on a 1,000,000-row table, on SQLite and PostgreSQL.

    .venv/bin/python bench/index_bench.py                      # SQLite, then PostgreSQL
    .venv/bin/python bench/index_bench.py --only sqlite        # one database
    BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test_bench .venv/bin/python bench/index_bench.py

Each database runs in its own process with its own PSIMEXPORT_DATA temp dir (SQLite file
there; the PostgreSQL database is dropped and recreated). Baselines in the same run: a full
decode per file (what an indexer without header probing pays), a bare os.walk + stat of the
tree (the floor of any re-scan), and the overlap query without the start bound.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/test_bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--rescan-files", type=int, default=100_000)
    parser.add_argument("--table-rows", type=int, default=1_000_000)
    parser.add_argument("--first-index-files", type=int, default=300)
    parser.add_argument("--only-covering", action="store_true", help="skip the file parts")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(args)
        return
    urls = {"sqlite": "", "postgres": os.environ.get("BENCH_PG_URL", DEFAULT_PG)}
    for name, url in urls.items():
        if args.only and args.only != name:
            continue
        with tempfile.TemporaryDirectory(prefix=f"index-bench-{name}-") as data:
            env = {**os.environ, "PSIMEXPORT_DATA": data, "DATABASE_URL": url}
            argv = [sys.executable, __file__, "--child", name,
                    "--rescan-files", str(args.rescan_files),
                    "--table-rows", str(args.table_rows),
                    "--first-index-files", str(args.first_index_files)]
            argv += ["--only-covering"] if args.only_covering else []
            subprocess.run(argv, env=env, check=True, cwd=ROOT)


# -- one database -------------------------------------------------------------------------------


def run_child(args) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
    if os.environ.get("DATABASE_URL"):
        recreate_postgres(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    print(f"\n=== {args.child}: {connection.vendor} {connection.Database.__name__} "
          f"{getattr(connection.Database, 'sqlite_version', '')} ===", flush=True)
    work = Path(os.environ["PSIMEXPORT_DATA"])
    if not args.only_covering:
        samples = make_samples(work / "samples")
        bench_first_index(work, samples, args.first_index_files)
        bench_rescan(work, samples["mp4"], args.rescan_files)
    bench_covering(args.table_rows)


def recreate_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def make_samples(folder: Path) -> dict[str, Path]:
    """A few real 2-second recordings (320x240 H.264 + AAC) in the containers recorders use."""
    from exports.media.synth import SegmentSpec, write_segment

    spec = SegmentSpec(width=320, height=240)
    samples = {}
    for suffix in ("mp4", "ts", "mkv"):
        path = folder / f"sample.{suffix}"
        write_segment(path, T0, 2.0, spec)
        samples[suffix] = path
    return samples


def bench_first_index(work: Path, samples: dict[str, Path], count: int) -> None:
    from exports.archive import index_camera
    from exports.media.synth import frigate_path
    from exports.models import Camera

    print("\n-- first index (real files: copies of 2 s 320x240 H.264+AAC segments) --")
    for suffix, sample in samples.items():
        root = work / f"first-{suffix}"
        for index in range(count):
            start = T0 + timedelta(seconds=2 * index)
            if suffix == "mp4":
                target = frigate_path(root, "cam", start)
            else:
                target = root / f"{start:%Y-%m-%d}" / f"{start:%Y-%m-%d_%H-%M-%S}.{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample, target)
        camera = Camera.objects.create(
            camera_id=f"first-{suffix}", source_name="cam", archive_path=str(root)
        )
        os.sync()
        summary = index_camera(camera)
        assert summary.added == count and not summary.failed, summary
        print(f"{suffix:>4}: {count} segments in {summary.seconds:.2f} s = "
              f"{count / summary.seconds:,.0f} segments/s")
    baseline_decode(samples)


def baseline_decode(samples: dict[str, Path]) -> None:
    """What finding the duration by decoding every frame would cost per file."""
    import av

    from exports.media.probe import probe

    for suffix, path in samples.items():
        began = time.perf_counter()
        for _ in range(20):
            with av.open(str(path)) as container:
                frames = sum(1 for _ in container.decode(video=0))
        decode_ms = (time.perf_counter() - began) / 20 * 1000
        began = time.perf_counter()
        for _ in range(20):
            result = probe(path)
        probe_ms = (time.perf_counter() - began) / 20 * 1000
        print(f"{suffix:>4}: probe {probe_ms:.2f} ms/file ({result.method}, "
              f"{result.packets_read} packets demuxed) vs baseline full decode "
              f"{decode_ms:.2f} ms/file ({frames} frames)")


def bench_rescan(work: Path, sample: Path, count: int) -> None:
    from django.db import transaction

    from exports.archive import index_camera
    from exports.media.synth import frigate_path
    from exports.models import Camera, Segment

    print(f"\n-- unchanged re-scan of {count:,} segments (Frigate layout, hard links of one "
          "real segment; index seeded by bulk insert) --")
    root = work / "frigate"
    began = time.perf_counter()
    rows = []
    for index in range(count):
        if index % 50_000 == 0:  # a file system allows only so many links to one inode
            source = work / f"link-source-{index}.mp4"
            shutil.copy2(sample, source)
            stat = source.stat()
        start = T0 + timedelta(seconds=10 * index)
        target = frigate_path(root, "cam", start)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        rows.append((str(target.relative_to(root)), start, stat.st_size, stat.st_mtime))
    # another camera's folders in the same hours, as in a real Frigate root
    for index in range(0, count, 360):
        start = T0 + timedelta(seconds=10 * index)
        other = frigate_path(root, "other", start)
        other.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(sample, other)
    print(f"made {count:,} files in {time.perf_counter() - began:.1f} s")

    camera = Camera.objects.create(
        camera_id="rescan", source_name="cam", layout="frigate", archive_path=str(root)
    )
    began = time.perf_counter()
    with transaction.atomic():
        Segment.objects.bulk_create(
            (
                Segment(camera=camera, path=path, start=start, end=start + timedelta(seconds=2),
                        size=size, mtime=mtime, video_codec="h264",
                        width=320, height=240, frame_rate=25, audio_codec="aac")
                for path, start, size, mtime in rows
            ),
            batch_size=5000,
        )
    print(f"seeded {count:,} rows in {time.perf_counter() - began:.1f} s")

    began = time.perf_counter()
    files = sum(len(names) for _, _, names in os.walk(root))
    for directory, _, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(directory, name))
    walk_seconds = time.perf_counter() - began

    timings = []
    for _ in range(3):
        summary = index_camera(camera)
        assert summary.unchanged == count and summary.added == summary.updated == 0, summary
        timings.append(summary.seconds)
    recent = [index_camera(camera, recent_only=True).seconds for _ in range(5)]
    print(f"unchanged re-scan: best {min(timings):.2f} s, worst {max(timings):.2f} s "
          f"(target <= 5 s); baseline os.walk+stat of {files:,} files: {walk_seconds:.2f} s")
    print(f"recent_only refresh (before an export): median {statistics.median(recent) * 1000:.1f} ms")


def bench_covering(total: int) -> None:
    from django.db import connection, transaction

    from exports.archive import _overlapping, recorded_intervals, segments_covering
    from exports.models import Camera, Segment

    cameras = 4
    per_camera = total // cameras
    print(f"\n-- segments_covering on a table of {total:,} segments "
          f"({cameras} cameras x {per_camera:,} x 10 s segments, 1 in 50 followed by a gap) --")
    began = time.perf_counter()
    created = [
        Camera.objects.create(camera_id=f"big{n}", archive_path="/nonexistent",
                              max_segment_seconds=10)
        for n in range(cameras)
    ]
    ops = connection.ops
    sql = (
        f"INSERT INTO {Segment._meta.db_table} (camera_id, path, start, \"end\", size, mtime, "
        "video_codec, width, height, frame_rate, audio_codec, complete) "
        "VALUES (%s, %s, %s, %s, 1000, 0, 'h264', 320, 240, 25, 'aac', %s)"
    )
    for camera in created:
        with transaction.atomic(), connection.cursor() as cursor:
            batch = []
            for index in range(per_camera):
                start = T0 + timedelta(seconds=10 * index)
                length = 7 if index % 50 == 49 else 10
                batch.append((camera.pk, f"{start:%Y-%m-%d/%H}/cam/{start:%M.%S}.mp4",
                              ops.adapt_datetimefield_value(start),
                              ops.adapt_datetimefield_value(start + timedelta(seconds=length)),
                              True))
                if len(batch) == 20000:
                    cursor.executemany(sql, batch)
                    batch = []
            if batch:
                cursor.executemany(sql, batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Segment._meta.db_table}")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"inserted {cameras * per_camera:,} rows in {time.perf_counter() - began:.1f} s "
          f"(table now {Segment.objects.count():,} rows)")

    camera = created[1]
    span = per_camera * 10
    rng = random.Random(1)
    for label, seconds in (("10 min", 600), ("1 h", 3600), ("24 h", 86400)):
        times, unbounded, scan_only, found = [], [], [], 0
        for _ in range(100 if seconds < 86400 else 10):
            start = T0 + timedelta(seconds=rng.uniform(0, span - seconds))
            end = start + timedelta(seconds=seconds)
            began = time.perf_counter()
            coverage = segments_covering(camera, start, end)
            times.append(time.perf_counter() - began)
            found += len(coverage.segments)
            began = time.perf_counter()
            list(_overlapping(camera, start, end).order_by("start").values_list("id", flat=True))
            scan_only.append(time.perf_counter() - began)
            began = time.perf_counter()
            list(Segment.objects.filter(camera=camera, start__lt=end, end__gt=start)
                 .order_by("start"))
            unbounded.append(time.perf_counter() - began)
        count = 100 if seconds < 86400 else 10
        print(f"{label:>6} range: segments_covering median {statistics.median(times) * 1000:.2f} ms, "
              f"max {max(times) * 1000:.2f} ms ({found / count:.0f} segments, "
              f"{len(coverage.gaps)} gaps in the last); the index scan alone (ids): median "
              f"{statistics.median(scan_only) * 1000:.2f} ms; baseline without the start "
              f"bound: median {statistics.median(unbounded) * 1000:.2f} ms")
    start = T0 + timedelta(seconds=span / 2)
    began = time.perf_counter()
    recorded_intervals(camera, start, start + timedelta(hours=24))
    print(f"recorded_intervals over 24 h: {(time.perf_counter() - began) * 1000:.1f} ms")
    print("query plan:")
    qs = Segment.objects.filter(
        camera=camera, start__gte=start - timedelta(seconds=10), start__lt=start + timedelta(hours=1),
        end__gt=start,
    ).order_by("start")
    for line in qs.explain().splitlines():
        print("   ", line)


if __name__ == "__main__":
    main()
