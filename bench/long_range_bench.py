"""Long-range benchmark: a 7-day export in 24 h parts, peak RSS and time vs shorter ranges.

Run by hand:  .venv/bin/python bench/long_range_bench.py [--days 7] [--segment 60] [--fps 10]
              [--cache DIR]

The archive is a low-bitrate camera: 160x90 H.264 at `--fps`, a keyframe every 2 s, in
`--segment`-second Frigate files covering `--days` days. Encoding a week of frames would take
longer than the export, so a few distinct segments are encoded once and hard-linked into every
slot of the week (timestamps restart at 0 in each file, as Frigate writes them; the picture
repeats). The archive and its index (SQLite, in a data dir of its own) are cached in
bench/.cache/long-range/.

Each export runs `manage.py export_archive` - the worker's own code path (split into parts by
exports/parts.py, the engine run per part) - in a child process, so its peak RSS and time are
its own. The baseline in the same run: the same command for 1 hour and for 1 day (one part).
Flat memory means the 7-day peak is close to the 1-day peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exports.media import synth  # noqa: E402

T0 = datetime(2026, 1, 5, 0, 0, 0, tzinfo=UTC)
DISTINCT = 3
CAMERA = "week"


def build_archive(folder: Path, days: int, segment_s: int, fps: int) -> int:
    """Hard-link a few encoded segments into every slot of `days` days; return the count."""
    spec = synth.SegmentSpec(width=160, height=90, fps=Fraction(fps), gop=2 * fps, acodec=None)
    distinct = []
    for number in range(DISTINCT):
        path = folder / "distinct" / f"{number}.mp4"
        if not path.exists():
            synth.write_segment(path, T0 + timedelta(seconds=number * segment_s), segment_s, spec)
        distinct.append(path)
    slots = days * 86400 // segment_s
    for slot in range(slots):
        target = synth.frigate_path(folder / "archive", CAMERA, T0 + timedelta(seconds=slot * segment_s))
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(distinct[slot % DISTINCT], target)
    return slots


def manage(env: dict, *args: str) -> str:
    """Run manage.py in a child; its stdout."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
        capture_output=True, text=True,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def run_export(env: dict, out_dir: Path, hours: float) -> dict:
    """export_archive of `hours` from T0 + 1 h; its summary, seconds and peak RSS."""
    start = T0 + timedelta(hours=1)
    end = start + timedelta(hours=hours)
    output = out_dir / f"export-{hours:g}h.mp4"
    for old in out_dir.glob(f"export-{hours:g}h*.mp4"):
        old.unlink()
    command = [
        sys.executable, str(ROOT / "manage.py"), "export_archive", CAMERA,
        start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--output", str(output),
    ]
    began = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = child.stdout.read()
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - began
    if status:
        raise SystemExit(f"export of {hours} h failed:\n{err.decode()[-3000:]}")
    summary = json.loads(out.decode().strip().splitlines()[-1])
    return {"summary": summary, "seconds": seconds, "rss_mb": usage.ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--segment", type=int, default=60, help="seconds per file")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache" / "long-range")
    args = parser.parse_args()

    folder = args.cache / f"{args.days}d-{args.segment}s-{args.fps}fps"
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, "PSIMEXPORT_DATA": str(folder / "data"), "PSIMEXPORT_DEMO": "0",
        "LOG_LEVEL": "warning", "PSIMEXPORT_STALL_SECONDS": "600",
    }
    env.pop("DATABASE_URL", None)
    began = time.monotonic()
    slots = build_archive(folder, args.days, args.segment, args.fps)
    print(f"archive: {slots} files of {args.segment} s, 160x90 at {args.fps} fps "
          f"({time.monotonic() - began:.1f} s to lay out)")
    if not (folder / "data" / "indexed").exists():
        began = time.monotonic()
        manage(env, "migrate", "--noinput")
        manage(env, "add_camera", CAMERA, str(folder / "archive"), "--layout", "frigate")
        (folder / "data" / "indexed").write_text("yes\n")
        print(f"indexed the archive in {time.monotonic() - began:.1f} s")
    out_dir = folder / "out"
    out_dir.mkdir(exist_ok=True)
    hours = [1, 24, (args.days - 1) * 24 + 23]  # the last: as long as the archive allows
    rows = []
    for length in hours:
        run = run_export(env, out_dir, length)
        summary = run["summary"]
        parts = len(summary.get("parts", [])) or 1
        rows.append((length, run, parts))
        print(
            f"{length:>4} h: {run['seconds']:7.1f} s, peak RSS {run['rss_mb']:6.1f} MB, "
            f"{parts} part(s), {summary['frames']} frames, {summary['bytes'] / 1e6:.1f} MB, "
            f"{summary['technique']}"
        )
    one_day, longest = rows[1][1], rows[-1][1]
    print(
        f"peak RSS {rows[-1][0]} h / 24 h = {longest['rss_mb'] / one_day['rss_mb']:.2f}x "
        f"(flat: close to 1); time per recorded day {longest['seconds'] / (rows[-1][0] / 24):.1f} s "
        f"vs {one_day['seconds']:.1f} s for the 24 h export"
    )


if __name__ == "__main__":
    main()
