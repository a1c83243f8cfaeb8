"""Export options benchmark: overlay, timelapse and stills on 1080p, against the plain stream
copy of the same footage in the same run.

Run by hand:  .venv/bin/python bench/options_bench.py [--minutes 1] [--rounds 2]

Uses export_bench's archive (1080p25 H.264 + AAC, 4 Mbit/s, a keyframe every 2 s, 10 s
files, cached in bench/.cache/). Prints seconds per minute of footage (best of --rounds) for:
the plain copy (engine.export, mp4), the overlay (every frame decoded, drawn, encoded), a
timelapse at 10× (every frame decoded, one in ten encoded), a timelapse at 50× (every kept
frame is a keyframe: copied, nothing decoded), and the latency of a jpg and a png still
taken mid-GOP (decoded from the keyframe before it), and the median time of drawing the overlay
on a decoded 1080p frame. From the overlay and 10× runs it derives
the per-frame costs the export form's preview uses (exports/option_cost.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import av  # noqa: E402
import export_bench  # noqa: E402

from exports.media import export  # noqa: E402
from exports.media.options import PictureOptions, export_with_options  # noqa: E402
from exports.media.overlay import OverlaySpec, draw  # noqa: E402

OUT = export_bench.CACHE / "options-out"


def best_of(rounds: int, run) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        began = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - began)
    return best, result


def draw_cost(path: Path, spec: OverlaySpec, count: int = 100) -> float:
    """Milliseconds overlay.draw takes per decoded frame of `path` (the median)."""
    with av.open(str(path)) as container:
        frames = [f for _, f in zip(range(count), container.decode(video=0), strict=False)]
    costs = []
    for frame in frames:
        began = time.perf_counter()
        draw(frame, spec, export_bench.T0)
        costs.append(time.perf_counter() - began)
    return sorted(costs)[len(costs) // 2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    segments = export_bench.build_archive(args.minutes)
    OUT.mkdir(parents=True, exist_ok=True)
    start = export_bench.T0
    end = start + timedelta(minutes=args.minutes)
    frames = args.minutes * 60 * 25
    overlay = OverlaySpec("Bench camera", "top-left", "Europe/Berlin", milliseconds=True)

    def video(name, options=None):
        out = OUT / name
        if options is None:
            return lambda: export(segments, start, end, "mp4", out)
        return lambda: export_with_options(segments, start, end, "mp4", out, options)

    runs = {
        "plain stream copy": video("copy.mp4"),
        "overlay (ms, Berlin time)": video("overlay.mp4", PictureOptions(overlay=overlay)),
        "timelapse 10x": video("tl10.mp4", PictureOptions(speed=10)),
        "timelapse 50x (keyframes)": video("tl50.mp4", PictureOptions(speed=50)),
    }
    print(f"load average before: {os.getloadavg()}")
    print(f"{args.minutes} min of 1080p25 ({frames} frames), best of {args.rounds}")
    times = {}
    for name, run in runs.items():
        seconds, result = best_of(args.rounds, run)
        times[name] = seconds
        copy = times["plain stream copy"]
        print(f"  {name:28s} {seconds / args.minutes:7.2f} s per minute  "
              f"{seconds / copy:6.1f}x the copy  ({result.technique}, {result.frames} frames)")
    mid_gop = start + timedelta(seconds=31.96)  # 49 frames after the keyframe at 30 s
    for fmt in ("jpg", "png"):
        out = OUT / f"still.{fmt}"
        seconds, _ = best_of(args.rounds, lambda f=fmt, o=out: export_with_options(
            segments, mid_gop, mid_gop, f, o, PictureOptions("1", "Bench camera")))
        print(f"  still {fmt} (mid-GOP, 50 frames decoded) {seconds * 1000:7.0f} ms, "
              f"{out.stat().st_size / 1e6:.2f} MB")
    draw_ms = draw_cost(segments[0].path, overlay)
    print(f"  drawing the overlay alone: {draw_ms:.1f} ms per 1080p frame (copy + label)")
    # overlay = frames × (decode + draw/encode); 10× = frames × decode + frames/10 × encode.
    overlay_s, tl_s = times["overlay (ms, Berlin time)"], times["timelapse 10x"]
    encode = (overlay_s - tl_s) / (frames - frames / 10)
    decode = overlay_s / frames - encode
    print(f"per 1080p frame: decode {decode * 1000:.2f} ms, draw + encode {encode * 1000:.2f} ms")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
