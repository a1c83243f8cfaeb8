"""Mosaic benchmark: the cost of a 2x2 and a 3x3 mosaic per minute of 1080p footage, against
the plain stream copy of one camera's minute, in the same run.

Run by hand:  .venv/bin/python bench/mosaic_bench.py [--seconds 60] [--cache DIR]

Footage: export_bench's 1080p25 H.264 + AAC archive (10 s segments, about 4 Mbit/s; built and
cached by bench/export_bench.py, or here on first use). Every camera of the mosaic reads the
same files (as many cameras as the grid holds), which costs the decoder what distinct cameras
would. The mosaic is 1920x1080 (tiles scaled down to fit), H.264 CRF 20, no audio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import export_bench  # noqa: E402

from exports.media import export  # noqa: E402
from exports.media.mosaic import MosaicInput, export_mosaic  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60, help="of footage (10 s segments)")
    parser.add_argument("--cache", type=Path, help="where export_bench's archive is cached")
    args = parser.parse_args()
    if args.cache:
        export_bench.CACHE = args.cache
    segments = export_bench.build_archive(1)[: max(1, args.seconds // export_bench.SEGMENT_S)]
    start, end = segments[0].start, segments[-1].end
    out = Path(tempfile.mkdtemp(prefix="mosaic-bench-"))
    footage = (end - start).total_seconds() / 60
    runs = {}
    began, cpu = time.perf_counter(), time.process_time()
    copy = export(segments, start, end, "mp4", out / "copy.mp4")
    runs["stream copy, 1 camera"] = (time.perf_counter() - began, time.process_time() - cpu, copy)
    for grid, cameras in (("2x2", 4), ("3x3", 9)):
        inputs = [MosaicInput(f"camera {n + 1}", segments) for n in range(cameras)]
        began, cpu = time.perf_counter(), time.process_time()
        result = export_mosaic(inputs, start, end, grid, "mp4", out / f"mosaic-{grid}.mp4")
        runs[f"mosaic {grid}, {cameras} cameras"] = (
            time.perf_counter() - began, time.process_time() - cpu, result
        )
    base = runs["stream copy, 1 camera"][1]
    # CPU seconds (all threads) as well as wall seconds: on a shared machine the wall clock
    # says more about the other jobs than about this one.
    print(f"{footage:g} min of 1080p25 footage per camera")
    for name, (seconds, cpu_seconds, result) in runs.items():
        print(
            f"{name:26s} wall {seconds:8.2f} s, CPU {cpu_seconds:8.2f} s = "
            f"{cpu_seconds / footage:7.2f} CPU s per minute ({cpu_seconds / base:6.1f}x the "
            f"copy), {result.frames} frames, {result.bytes / 1e6:.1f} MB"
        )
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
