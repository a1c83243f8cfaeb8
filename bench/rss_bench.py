"""Peak memory of a stream-copy export to mp4 through the whole engine, 1 minute to 24 hours.

Run by hand:  .venv/bin/python bench/rss_bench.py [--hours 0.0167 1 6 24] [--cache DIR]

What drives memory is the number of samples (frames and audio packets), not their bytes, so
the archive is low-bitrate: 160x90 25 fps H.264 (GOP 2 s) + 48 kHz mono AAC (46.9 packets
a second, as export_bench's 1080p archive) in 10 s segments, about 6.2 million samples a day.
A few distinct segments are encoded once and hard-linked into every 10 s slot of the day
(timestamps restart at 0 in each file, as Frigate writes them), so a day costs seconds to lay
out. Each export runs `engine.export` (index, plan, executor, direct MP4 writer) in a child
process of its own, which prints its peak RSS (VmHWM, see peak_mb) and time; the baseline is a child
that only imports the engine. Indexes are built from the files (no database cache).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / ".cache" / "rss"
T0 = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
SEGMENT_S = 10
DISTINCT = 3
DAY_SLOTS = 24 * 3600 // SEGMENT_S


def build_archive(cache: Path) -> list[tuple[Path, datetime]]:
    """Every 10 s slot of a day: (path, start). Built once, hard links after the first few."""
    from exports.media import synth

    spec = synth.SegmentSpec(
        width=160, height=90, fps=25, gop=50, acodec="aac", sample_rate=48000, crf=35
    )
    distinct = []
    for number in range(DISTINCT):
        path = cache / "distinct" / f"{number}.mp4"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.mp4")
            synth.write_segment(tmp, T0 + timedelta(seconds=SEGMENT_S * number), SEGMENT_S, spec)
            tmp.rename(path)
        distinct.append(path)
    slots = []
    for slot in range(DAY_SLOTS):
        start = T0 + timedelta(seconds=SEGMENT_S * slot)
        path = synth.frigate_path(cache / "archive", "rss", start)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(distinct[slot % DISTINCT], path)
        slots.append((path, start))
    return slots


def peak_mb() -> float:
    """Peak RSS of this process: VmHWM, the high-water mark of its own address space.

    ru_maxrss would be the same but for one Linux detail: it keeps the parent's RSS from
    before exec (the bench's parent, which encoded the archive with PyAV, is bigger than an
    idle engine), so it could never show a figure below the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    """One export (or, with --seconds 0, only the imports) in this process; print JSON."""
    from exports.media import engine

    if not args.seconds:
        print(json.dumps({"rss_mb": peak_mb()}))
        return
    listing = json.loads(Path(args.listing).read_text())
    segments = [
        engine.SourceSegment(
            Path(path),
            datetime.fromisoformat(start),
            datetime.fromisoformat(start) + timedelta(seconds=SEGMENT_S),
        )
        for path, start in listing
    ]
    end = T0 + timedelta(seconds=args.seconds)
    began = time.perf_counter()
    result = engine.export(segments, T0, end, "mp4", Path(args.out))
    elapsed = time.perf_counter() - began
    size = Path(args.out).stat().st_size
    Path(args.out).unlink()
    print(
        json.dumps(
            {
                "rss_mb": peak_mb(),
                "seconds": elapsed,
                "frames": result.frames,
                "technique": result.technique,
                "bytes": size,
                "gaps": len(result.gaps),
            }
        )
    )


def run_child(cache: Path, slots, seconds: float) -> dict:
    listing = cache / "listing.json"
    count = -(-int(seconds) // SEGMENT_S)
    listing.write_text(json.dumps([[str(p), s.isoformat()] for p, s in slots[:count]]))
    completed = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--listing",
            str(listing),
            "--seconds",
            str(seconds),
            "--out",
            str(cache / "out.mp4"),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, nargs="+", default=[1 / 60, 1, 6, 24])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--listing")
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cache = args.cache.resolve()
    slots = build_archive(cache)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    base = run_child(cache, slots, 0)
    print(f"baseline (python importing the engine): peak RSS {base['rss_mb']:.0f} MB", flush=True)
    for hours in args.hours:
        seconds = round(hours * 3600)
        figures = run_child(cache, slots, seconds)
        label = f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:g} h"
        print(
            f"{label:>6}: peak RSS {figures['rss_mb']:4.0f} MB "
            f"(+{figures['rss_mb'] - base['rss_mb']:.0f} over the baseline), "
            f"{figures['seconds']:7.1f} s, {figures['frames']} frames, "
            f"{figures['bytes'] / 1e6:.0f} MB written, {figures['technique']}",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
