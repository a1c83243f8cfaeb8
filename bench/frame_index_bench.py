"""Frame index benchmark: stored bytes per frame and build time for 10 s camera segments.

    .venv/bin/python bench/frame_index_bench.py [--seconds 10] [--rounds 3]

Segments are generated once (H.264 + AAC, 1 s GOP with 2 B-frames, sensor-like noise) at
1920x1080 and 640x360, in MP4, MOV and MPEG-TS. For each: packets indexed, the serialised index
(`SegmentIndex.to_bytes()`, what the cache row stores) in bytes, per video frame and per
packet (video and audio), and the best of `--rounds` builds: `build_index` as the engine calls
it (MP4/MOV: from the moov sample tables), `build_index(method="demux")` (every packet through
PyAV) and a bare demux of the same file with PyAV (reading every packet, nothing else), in the
same run; packets per second for the first two. Page cache warm (the files were just read).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exports.media import synth  # noqa: E402
from exports.media.frameindex import build_index  # noqa: E402


def demux_index(path: Path):
    return build_index(path, method="demux")


T0 = datetime(2026, 1, 1, tzinfo=UTC)
SIZES = ((1920, 1080), (640, 360))


def bare_demux(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux() if packet.size)


def best(function, path: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        function(path)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'segment':<20}{'video':>6}{'audio':>6}{'index B':>9}{'B/video frame':>14}"
        f"{'B/packet':>9}{'build ms':>10}{'index(demux) ms':>16}{'bare demux ms':>14}"
        f"{'build pkt/s':>12}{'demux pkt/s':>12}{'speed-up':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="frame-index-bench-") as folder:
        for width, height in SIZES:
            spec = synth.SegmentSpec(
                width=width, height=height, bframes=2, noise=12, preset="ultrafast"
            )
            for suffix in (".mp4", ".mov", ".ts"):
                path = Path(folder) / f"{width}x{height}{suffix}"
                synth.write_segment(path, T0, args.seconds, spec)
                index = build_index(path)
                frames, sounds = len(index.video), len(index.audio)
                stored = len(index.to_bytes())
                assert index.to_bytes() == demux_index(path).to_bytes()
                build_s = best(build_index, path, args.rounds)
                index_demux_s = best(demux_index, path, args.rounds)
                demux_s = best(bare_demux, path, args.rounds)
                packets = frames + sounds
                print(
                    f"{path.name:<20}{frames:>6}{sounds:>6}{stored:>9}{stored / frames:>14.2f}"
                    f"{stored / packets:>9.2f}{build_s * 1000:>10.1f}"
                    f"{index_demux_s * 1000:>16.1f}{demux_s * 1000:>14.1f}"
                    f"{packets / build_s:>12.0f}{packets / index_demux_s:>12.0f}"
                    f"{index_demux_s / build_s:>8.1f}x"
                )


if __name__ == "__main__":
    main()
