"""Evidence bench: what source hashing and the signed manifest cost an export.

Run by hand:  .venv/bin/python bench/evidence_bench.py [--archive DIR] [--rounds 3]

Uses export_bench's one-hour archive (360 × 10 s 1080p segments, 1.85 GB; --archive defaults to
/work/benchcache/archive when it is READY, else bench/.cache/archive) read-only. In a throwaway
data dir (SQLite) it makes a camera whose index lists those files, then for each round:

  export     engine.export() of the whole hour to mp4 (the plain PSIM export, baseline);
  first      describe_sources() + sign, as the worker does when no segment has a hash yet
             (every source read and hashed once, hashes stored);
  repeated   the same for a second export: the hashes are in the index (a stat per file);
  output     SHA-256 of the output file, which every export already computed before this.

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
    end = T0 + timedelta(hours=1)
    exports, firsts, repeats, outputs = [], [], [], []
    for _ in range(args.rounds):
        Segment.objects.update(sha256="", sha256_size=None, sha256_mtime=None)
        out = out_dir / "hour.mp4"
        seconds, result = timed(lambda out=out: export(sources, T0, end, "mp4", out))
        exports.append(seconds)
        task = ExportTask(camera=camera, requested_from=T0, start=T0, end=end, format="mp4",
                          created_at=timezone.now())
        output_s, digest = timed(lambda out=out: hashlib.file_digest(open(out, "rb"), "sha256")
                                 .hexdigest())
        outputs.append(output_s)

        def manifest(out=out, result=result, task=task, digest=digest):
            return manifest_module.write_signed_manifest(
                task, result, out, out.stat().st_size, digest, timezone.now())

        firsts.append(timed(manifest)[0])
        repeats.append(timed(manifest)[0])
        assert not Segment.objects.filter(sha256="").exists()
        out.unlink()
        os.sync()
    print("all rounds (s): export " + " ".join(f"{s:.2f}" for s in exports)
          + " | first manifest " + " ".join(f"{s:.2f}" for s in firsts)
          + " | repeated " + " ".join(f"{s:.3f}" for s in repeats)
          + " | output hash " + " ".join(f"{s:.2f}" for s in outputs))
    base, first, repeat = min(exports), min(firsts), min(repeats)
    print(f"one-hour stream copy export:          {base:.2f} s")
    print(f"+ manifest, sources not yet hashed:   {first:.2f} s ({first / base:.2f}x the export;"
          f" {total / first / 1e6:.0f} MB/s)")
    print(f"+ manifest, sources hashed before:    {repeat:.3f} s ({repeat / base:.3f}x the export)")
    print(f"  (output SHA-256, computed by every export already: {min(outputs):.2f} s)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
