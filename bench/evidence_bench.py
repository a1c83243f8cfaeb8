"""Evidence bench: what source hashing and the signed manifest cost an export.

Run by hand:  .venv/bin/python bench/evidence_bench.py [--archive DIR] [--rounds 3]

Uses export_bench's one-hour archive (360 × 10 s 1080p segments, 1.85 GB; --archive defaults to
/work/benchcache/archive when it is READY, else bench/.cache/archive) read-only. In a throwaway
data dir (SQLite) it makes a camera whose index lists those files, then for each round:

  plain      engine.export() of the whole hour to mp4 and the output's SHA-256: what the
             worker did before manifests (baseline);
  first      the same plus the evidence work when no source has a hash yet: the sources
             hashed in a thread during the copy (as the worker does), then the manifest;
  repeated   a second export: the hashes are in the index (a stat per file);
  serial     first export with the sources hashed only after the copy (for comparison).

It also prints SHA-256 throughput (MB/s) on a page-cached source and the load average.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(tempfile.mkdtemp(prefix="evidence-bench-"))
os.environ["PSIMEXPORT_DATA"] = str(DATA)
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from exports import manifest as manifest_module  # noqa: E402
from exports import source_hashes  # noqa: E402
from exports.media import SourceSegment, export  # noqa: E402
from exports.models import Camera, ExportTask, Segment  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def default_archive() -> Path:
    shared = Path("/work/benchcache")
    if (shared / "READY").exists():
        return shared / "archive"
    return ROOT / "bench" / ".cache" / "archive"


def make_camera(archive: Path) -> tuple[Camera, list[SourceSegment]]:
    camera = Camera.objects.create(camera_id="bench", archive_path=str(archive))
    sources, rows = [], []
    for path in sorted(archive.rglob("*.mp4")):
        minute, second = (int(x) for x in path.stem.split("."))
        start = T0 + timedelta(hours=int(path.parent.parent.name), minutes=minute, seconds=second)
        end = start + timedelta(seconds=10)
        stat = path.stat()
        rows.append(Segment(camera=camera, path=path.relative_to(archive).as_posix(), start=start,
                            end=end, size=stat.st_size, mtime=stat.st_mtime,
                            video_codec="h264", complete=True))
        sources.append(SourceSegment(path, start, end))
    Segment.objects.bulk_create(rows)
    return camera, sources


def timed(work):
    began = time.perf_counter()
    value = work()
    return time.perf_counter() - began, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path, default=default_archive())
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    camera, sources = make_camera(args.archive.resolve())
    total = sum(s.path.stat().st_size for s in sources)
    print(f"archive: {len(sources)} segments, {total / 1e9:.2f} GB ({args.archive})")
    print(f"load average before: {os.getloadavg()}")

    probe = sources[0].path
    probe.read_bytes()  # in the page cache: the figure is the CPU's, not the disk's
    seconds, _ = timed(lambda: [source_hashes.file_sha256(probe) for _ in range(20)])
    print(f"SHA-256 throughput (page-cached 10 s segment, x20): "
          f"{20 * probe.stat().st_size / seconds / 1e6:.0f} MB/s")

    out_dir = DATA / "out"
    out_dir.mkdir()
    plain, firsts, repeats, serials = [], [], [], []
    for _ in range(args.rounds):
        plain.append(worker_export(camera, sources, out_dir, evidence=False))
        Segment.objects.update(sha256="", sha256_size=None, sha256_mtime=None)
        firsts.append(worker_export(camera, sources, out_dir))
        assert not Segment.objects.filter(sha256="").exists()
        repeats.append(worker_export(camera, sources, out_dir))
        Segment.objects.update(sha256="", sha256_size=None, sha256_mtime=None)
        serials.append(worker_export(camera, sources, out_dir, parallel=False))
    print("all rounds, wall s (CPU s): " + " | ".join(
        f"{name} " + " ".join(f"{w:.2f} ({c:.2f})" for w, c in runs)
        for name, runs in (("plain", plain), ("first", firsts), ("repeated", repeats),
                           ("first, hashing after the copy", serials))))
    base_wall = min(w for w, _ in plain)
    base_cpu = min(c for _, c in plain)
    print(f"plain export (baseline): wall {base_wall:.2f} s, CPU {base_cpu:.2f} s")
    for label, runs in (("first export, sources hashed during the copy", firsts),
                        ("first export, sources hashed after the copy", serials),
                        ("repeated export (hashes in the index)", repeats)):
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        print(f"{label + ':':48s} wall {wall:.2f} s ({wall / base_wall:.2f}x), "
              f"CPU {cpu:.2f} s ({cpu - base_cpu:+.2f} s)")
    print(f"load average after: {os.getloadavg()}")


def worker_export(camera, sources, out_dir, evidence=True, parallel=True):
    """What the worker does for a one-hour export: engine, output SHA-256, and (evidence) the
    hashes of the sources and the signed manifest. (Wall-clock seconds, CPU seconds of the
    process: user + system, all threads; on a shared machine the CPU figure is the steadier.)"""
    out = out_dir / "hour.mp4"
    end = T0 + timedelta(hours=1)
    task = ExportTask(camera=camera, requested_from=T0, start=T0, end=end, format="mp4",
                      created_at=timezone.now())
    began, cpu = time.perf_counter(), time.process_time()
    rows = list(Segment.objects.filter(camera=camera))  # as the worker reads the index
    with source_hashes.ParallelHasher(camera, rows if evidence and parallel else []) as hasher:
        result = export(sources, T0, end, "mp4", out)
        hashed = hasher.results(keepalive=lambda: None)
    result.source_hashes = hashed
    with open(out, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if evidence:
        manifest_module.write_signed_manifest(task, result, out, out.stat().st_size, digest,
                                              timezone.now())
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    out.unlink()
    os.sync()
    return seconds, cpu


if __name__ == "__main__":
    main()
