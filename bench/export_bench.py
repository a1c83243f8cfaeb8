"""Export benchmark: stream copy and exact cut of a long 1080p archive vs FFmpeg and cat.

Run by hand:  .venv/bin/python bench/export_bench.py [--minutes 60] [--mode engine|writer]
              [--cache DIR]

--mode engine (default) measures engine.export(): the full path (index, plan, executor) as
the engine wires it, in --rounds interleaved rounds (default 3) of: a first export of the
whole archive to mp4 (every frame index built), the same export with the indexes loaded as
the cache stores them, FFmpeg's concat demuxer with `-c copy`, `cat` of the segments, and an
exact mid-GOP cut of the archive (indexes loaded); it prints medians, ranges, the ratios of
the medians against the targets, and the load average. --mode writer measures mp4writer.write_mp4 alone: tracks are built from
frameindex.build_index of every segment (timed apart), then the stream copy is written and
compared with `cat` of the segments and FFmpeg's concat demuxer with `-c copy`, plus peak RSS
for 1 minute, the whole archive and a synthetic day of sample tables. --cache puts the
archive and outputs elsewhere (e.g. an XFS mount with reflinks, where copy_file_range shares
extents); an archive already in bench/.cache is copied there rather than encoded again.

The archive (cached in bench/.cache/) is 1080p25 H.264 + AAC at about 4 Mbit/s in 10 s
segments. Encoding 90,000 distinct 1080p frames takes too long on a small machine, so a few
distinct 10 s segments are encoded with x264 (ultrafast, ABR 4 Mbit/s) and then remuxed into
every 10 s slot of the hour with that slot's creation_time, giving real, independently
timestamped files (timestamps restart at 0 per file, as Frigate writes them); the picture
repeats every few segments. Each export runs in a child process so its peak RSS can be read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402

from exports.media import SourceSegment, export, synth  # noqa: E402
from exports.media.frameindex import SegmentIndex, build_index  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
T0 = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
SEGMENT_S = 10
DISTINCT = 4
SPEC = synth.SegmentSpec(
    width=1920, height=1080, fps=25, gop=50, acodec="aac", sample_rate=48000, preset="ultrafast",
    noise=12,
    x264_extra={"bitrate": 4000, "vbv-maxrate": 4500, "vbv-bufsize": 8000},
)


def build_archive(minutes: int) -> list[SourceSegment]:
    """The cached archive: `minutes` of 10 s segments (built once)."""
    folder = CACHE / "archive"
    distinct = []
    for index in range(DISTINCT):
        path = CACHE / "distinct" / f"{index}.mp4"
        if not path.exists():
            print(f"encoding distinct segment {index + 1}/{DISTINCT} ...", flush=True)
            tmp = path.with_suffix(".tmp.mp4")
            synth.write_segment(tmp, T0 + timedelta(seconds=SEGMENT_S * index), SEGMENT_S, SPEC)
            tmp.rename(path)
        distinct.append(path)
    segments = []
    for slot in range(minutes * 60 // SEGMENT_S):
        start = T0 + timedelta(seconds=SEGMENT_S * slot)
        path = synth.frigate_path(folder, "bench", start)
        if not path.exists():
            remux_with_creation_time(distinct[slot % DISTINCT], path, start)
        segments.append(SourceSegment(path, start, start + timedelta(seconds=SEGMENT_S)))
    return segments


def remux_with_creation_time(source: Path, target: Path, start: datetime) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.mp4")
    with av.open(str(source)) as src, av.open(str(tmp), "w", format="mp4") as dst:
        dst.metadata["creation_time"] = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        mapping = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            dst.mux(packet)
    tmp.rename(target)


def writer_child(args) -> None:
    """Build tracks from the segments' frame indexes, write them with write_mp4; print JSON."""
    from exports.media import mp4writer
    from tests.mp4_sources import concatenated

    listing = Path(args.segments).read_text()
    paths = [Path(p) for p, _, _ in json.loads(listing)]
    # The tracks of a listing are built once (build_index of every segment, 25-90 s an hour
    # here) and reused by the next rounds (same files, sizes, mtimes), which time the writing.
    stamp = listing + "".join(f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)
    saved = CACHE / f"tracks-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}.pickle"
    began = time.perf_counter()
    if saved.exists():
        tracks, sources, index_seconds = pickle.loads(saved.read_bytes())
    else:
        tracks, sources = concatenated(paths)
        index_seconds = time.perf_counter() - began
        saved.write_bytes(pickle.dumps((tracks, sources, index_seconds)))
    Path(args.out).unlink(missing_ok=True)  # measure the space of this output alone
    os.sync()
    free_before = disk_free(Path(args.out).parent)
    indexed = time.perf_counter()
    rss_indexed = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = mp4writer.write_mp4(Path(args.out), tracks, sources, brand=args.fmt)
    written = time.perf_counter()
    os.sync()
    space = free_before - disk_free(Path(args.out).parent)
    tables = [track.tables(number) for number, track in enumerate(tracks, 1)]
    extents = mp4writer._layout(tables, len(sources))[1].source
    print(json.dumps({
        "seconds": written - indexed, "index_seconds": index_seconds,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_indexed_mb": rss_indexed, "bytes": size, "frames": len(tracks[0].dts),
        "samples": sum(len(t.dts) for t in tracks), "extents": len(extents),
        "method": copy_method(paths[0], Path(args.out).parent), "space": space,
    }))


def disk_free(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def day_child(args) -> None:
    """Peak RSS of write_mp4 for a day of 1080p25 + 48 kHz AAC sample tables (1-byte samples
    read from one small file, so the tables are real and the mdat small)."""
    from exports.media.mp4writer import SampleEntry, Track, write_mp4

    source = Path(args.out).with_suffix(".src")
    seconds = 24 * 3600
    counts = {"video": seconds * 25, "audio": seconds * 48000 // 1024}
    source.write_bytes(bytes(max(counts.values())))
    video_entry = SampleEntry("h264", bytes.fromhex("01640028ffe1000467640028010004"), 1920, 1080)
    tracks = []
    for media, n in counts.items():
        step = 512 if media == "video" else 1024
        tracks.append(Track(
            media, 12800 if media == "video" else 48000,
            [video_entry if media == "video" else SampleEntry("aac", b"\x11\x90", 0, 0,
                                                              sample_rate=48000, channels=1)],
            dts=np.arange(n, dtype=np.int64) * step, cts=np.zeros(n, np.int32),
            duration=np.full(n, step, np.int32), sync=np.arange(n) % 50 == 0,
            size=np.ones(n, np.int32), source=np.zeros(n, np.int32),
            offset=np.arange(n, dtype=np.int64), entry=np.zeros(n, np.uint8)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    began = time.perf_counter()
    size = write_mp4(Path(args.out), tracks, [source])
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    source.unlink()
    Path(args.out).unlink()
    print(json.dumps({"seconds": elapsed, "rss_tracks_mb": before, "rss_mb": after,
                      "samples": sum(counts.values()), "bytes": size}))


def copy_method(source: Path, folder: Path) -> str:
    """Whether copy_file_range works from the archive to `folder` (else the writer falls back)."""
    probe = folder / ".probe"
    with open(source, "rb") as src, open(probe, "wb") as out:
        try:
            os.copy_file_range(src.fileno(), out.fileno(), 4096, 0, 0)
            method = "copy_file_range"
        except OSError as error:
            method = f"fallback ({error.strerror})"
    probe.unlink()
    return method


def child(args) -> None:
    """Run one export in this process and print its figures as JSON."""
    segments = [SourceSegment(Path(p), datetime.fromisoformat(s), datetime.fromisoformat(e))
                for p, s, e in json.loads(Path(args.segments).read_text())]
    index_for = FileIndexCache(Path(args.index_cache)) if args.index_cache else None
    began, cpu_before = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    result = export(segments, datetime.fromisoformat(args.start), datetime.fromisoformat(args.end),
                    args.fmt, Path(args.out), index_for=index_for)
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "cpu": cpu, "rss_mb": rss_mb, **result.to_dict()}))


class FileIndexCache:
    """The engine's `index_for` with each segment's index stored as `SegmentIndex.to_bytes()`
    in a file (what frame_cache keeps in its database row): loaded when the file's size and
    mtime match, else built and stored. Times the database would add are not in it."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def name(self, path: Path) -> str:
        stat = path.stat()
        return hashlib.sha1(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()

    def __call__(self, path: Path) -> SegmentIndex:
        stored = self.folder / self.name(path)
        if stored.exists():
            return SegmentIndex.from_bytes(stored.read_bytes(), path)
        index = build_index(path)
        stored.write_bytes(index.to_bytes())
        return index


def fill_index_cache(cache: FileIndexCache, segments) -> float:
    """Store every segment's index in `cache`; the seconds that SegmentIndex.to_bytes took."""
    shutil.rmtree(cache.folder, ignore_errors=True)
    cache.folder.mkdir(parents=True)
    seconds = 0.0
    for segment in segments:
        index = build_index(segment.path)
        began = time.perf_counter()
        data = index.to_bytes()
        seconds += time.perf_counter() - began
        (cache.folder / cache.name(segment.path)).write_bytes(data)
    return seconds


def run_child(segments, start, end, fmt, out, kind: str = "--child",
              index_cache: Path | None = None) -> dict:
    listing = Path(out).parent / "segments.json"
    listing.write_text(json.dumps([[str(s.path), s.start.isoformat(), s.end.isoformat()]
                                   for s in segments]))
    command = [sys.executable, __file__, kind, "--cache", str(CACHE), "--segments", str(listing),
               "--start", start.isoformat(), "--end", end.isoformat(), "--fmt", fmt,
               "--out", str(out)]
    if index_cache is not None:
        command += ["--index-cache", str(index_cache)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


ROUNDS = 3


def settle(path: Path, keep: bool = False) -> None:
    """Drop a measured output (unless kept) and flush dirty pages before the next run."""
    if not keep:
        path.unlink(missing_ok=True)
    subprocess.run(["sync"], check=False)


def cpu_seconds(who: int) -> float:
    """User + system CPU time of this process (its threads) or of its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], stdout=subprocess.DEVNULL) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=stdout, stderr=subprocess.PIPE)
    return time.perf_counter() - began


def measured(command: list[str], stdout=subprocess.DEVNULL) -> dict:
    """Wall and CPU seconds of a command."""
    cpu_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    seconds = timed(command, stdout)
    return {"seconds": seconds, "cpu": cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before}


def main() -> None:
    global CACHE
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--mode", choices=("engine", "writer"), default="engine")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--writer-child", action="store_true")
    parser.add_argument("--day-child", action="store_true")
    parser.add_argument("--segments")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--fmt")
    parser.add_argument("--out")
    parser.add_argument("--index-cache")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.child or args.writer_child or args.day_child:
        CACHE = args.cache.resolve()
        {"child": child, "writer_child": writer_child, "day_child": day_child}[
            next(k for k in ("child", "writer_child", "day_child") if getattr(args, k))](args)
        return
    use_cache(args.cache)
    segments = build_archive(args.minutes)
    if args.mode == "writer":
        writer_bench(segments, args.minutes)
        return
    total = sum(s.path.stat().st_size for s in segments)
    span = args.minutes * 60
    print(f"archive: {len(segments)} segments, {total / 1e9:.2f} GB, "
          f"{total * 8 / span / 1e6:.2f} Mbit/s")
    work = CACHE / f"out-{os.getpid()}"  # others may run this bench on the same archive
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    end = T0 + timedelta(seconds=span)
    subprocess.run(["sync"], check=False)

    concat = work / "concat.txt"
    concat.write_text("".join(f"file '{s.path}'\n" for s in segments))
    ffmpeg = shutil.which("ffmpeg")
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
    cut_start = T0 + timedelta(seconds=3.37)  # mid-GOP (GOP = 2 s)
    cut_end = end - timedelta(seconds=4.21)
    # The machine is shared and writing GBs leaves dirty pages behind: every measurement
    # starts with no output file of its own and syncs after. Each round runs every measure
    # once, interleaved; figures are medians (range) of the rounds, ratios those of medians.
    # The first export builds every frame index (nothing cached, nothing stored, as the engine
    # alone); the second and the cut load them, serialised as the cache row keeps them, from
    # files written here once (the time that storing adds to a first export is printed).
    runs = {name: [] for name in ("copy", "cached", "cut", "ffmpeg", "cat")}
    index_cache = work / "index-cache"
    store_s = fill_index_cache(FileIndexCache(index_cache), segments)
    for _ in range(args.rounds):
        settle(work / "copy.mp4")
        runs["copy"].append(run_child(segments, T0, end, "mp4", work / "copy.mp4"))
        settle(work / "copy.mp4")
        runs["cached"].append(run_child(segments, T0, end, "mp4", work / "copy.mp4",
                                        index_cache=index_cache))
        settle(work / "copy.mp4", keep=True)
        runs["ffmpeg"].append(measured([
            ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(concat), "-c",
            "copy", str(work / "ffmpeg.mp4")]))
        settle(work / "ffmpeg.mp4")
        with open(work / "cat.bin", "wb") as sink:
            runs["cat"].append(measured(["cat", *[str(s.path) for s in segments]], sink))
        settle(work / "cat.bin")
        runs["cut"].append(run_child(segments, cut_start, cut_end, "mp4", work / "cut.mp4",
                                     index_cache=index_cache))
        settle(work / "cut.mp4")
    load = os.getloadavg()
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r["cpu"] for r in rs) for name, rs in runs.items()}
    ours, cut = runs["copy"][-1], runs["cut"][-1]
    minute = run_child(segments, cut_start, cut_start + timedelta(minutes=1), "mp4",
                       work / "minute.mp4")
    sync = sync_at_end(work / "copy.mp4")
    hour_avi = run_child(segments, T0, end, "avi", work / "copy.avi")
    avi_frames, avi_duration = count_video(work / "copy.avi")
    print(f"ffmpeg: {version.splitlines()[0]}")
    print(f"load average after the rounds: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("all runs (s): " + " | ".join(
        f"{name} " + " ".join(f"{r['seconds']:.2f}" for r in rs) for name, rs in runs.items()))

    def figure(name: str) -> str:
        values = [r["seconds"] for r in runs[name]]
        return f"{median[name]:.2f} s ({min(values):.2f}-{max(values):.2f})"

    print(f"stream copy {args.minutes} min -> mp4, first export (indexes built): "
          f"{figure('copy')}  ({ours['frames']} frames, {ours['bytes'] / 1e9:.2f} GB, "
          f"technique {ours['technique']})")
    print(f"  same export again, indexes cached:  {figure('cached')}  (serialising the "
          f"{len(segments)} indexes for the cache adds {store_s:.2f} s to a first export)")
    print(f"  cat of the segments:                {figure('cat')}")
    print(f"  ffmpeg concat -c copy:              {figure('ffmpeg')}")
    print(f"  first/cat = {median['copy'] / median['cat']:.2f}x (target <= 1.5x); "
          f"first/ffmpeg = {median['copy'] / median['ffmpeg']:.2f}x (target <= 0.5x); "
          f"cached/cat = {median['cached'] / median['cat']:.2f}x")
    # CPU time moves far less with the machine's load than wall time does.
    print("CPU seconds (user + system, median): " + ", ".join(
        f"{name} {value:.2f}" for name, value in cpu.items())
          + f"; first/cat = {cpu['copy'] / cpu['cat']:.2f}x, first/ffmpeg = "
          f"{cpu['copy'] / cpu['ffmpeg']:.2f}x, cut/cached copy = "
          f"{cpu['cut'] / cpu['cached']:.2f}x")
    print(f"exact mid-GOP cut (indexes cached): {figure('cut')}  cut/cached copy = "
          f"{median['cut'] / median['cached']:.2f}x (target <= 1.1x; technique "
          f"{cut['technique']}, {cut['reencoded_frames']} frames re-encoded)")
    print(f"peak RSS: 1 min export {minute['rss_mb']:.0f} MB, {args.minutes} min export "
          f"{ours['rss_mb']:.0f} MB (target <= 200 MB for 60 min)")
    print(f"A/V sync in the last 10 s of the {args.minutes} min mp4: beep minus frame "
          f"showing its second = {', '.join(f'{o * 1000:+.0f} ms' for o in sync)}")
    print(f"avi of {args.minutes} min: {hour_avi['seconds']:.2f} s, "
          f"{hour_avi['bytes'] / 1e9:.2f} GB, read back {avi_frames} frames, "
          f"{avi_duration:.1f} s (OpenDML above 1 GB)")
    shutil.rmtree(work, ignore_errors=True)


def use_cache(folder: Path) -> None:
    """Keep the archive and outputs in `folder`, seeded from bench/.cache when it has them."""
    global CACHE
    folder = folder.resolve()
    if folder != CACHE and (CACHE / "archive").is_dir() and not (folder / "archive").exists():
        print(f"copying the cached archive to {folder} ...", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("distinct", "archive"):
            shutil.copytree(CACHE / name, folder / name)
    CACHE = folder


def writer_bench(segments, minutes: int) -> None:
    """write_mp4 stream copy of the archive vs cat and ffmpeg concat -c copy (best of ROUNDS)."""
    work = CACHE / "out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    end = T0 + timedelta(seconds=minutes * 60)
    concat = work / "concat.txt"
    concat.write_text("".join(f"file '{s.path}'\n" for s in segments))
    ffmpeg = shutil.which("ffmpeg")
    subprocess.run(["sync"], check=False)
    ours, ffs, cats = [], [], []
    for _ in range(ROUNDS):
        ours.append(run_child(segments, T0, end, "mp4", work / "copy.mp4", "--writer-child"))
        settle(work / "copy.mp4", keep=True)
        if ffmpeg:
            ffs.append(timed([ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                              str(concat), "-c", "copy", str(work / "ffmpeg.mp4")]))
            settle(work / "ffmpeg.mp4")
        with open(work / "cat.bin", "wb") as sink:
            cats.append(timed(["cat", *[str(s.path) for s in segments]], stdout=sink))
        settle(work / "cat.bin")
    best = min(ours, key=lambda r: r["seconds"])
    frames, order = check_output(work / "copy.mp4")
    minute = run_child(segments[:6], T0, T0 + timedelta(minutes=1), "mp4", work / "minute.mp4",
                       "--writer-child")
    day = run_child(segments[:1], T0, end, "mp4", work / "day.mp4", "--day-child")
    cat_s = min(cats)
    print(f"filesystem: {fs_type(CACHE)} at {CACHE}; copy technique: {best['method']}")
    print("all runs (s): write_mp4 " + " ".join(f"{r['seconds']:.2f}" for r in ours)
          + " | ffmpeg " + " ".join(f"{t:.2f}" for t in ffs)
          + " | cat " + " ".join(f"{t:.2f}" for t in cats))
    print(f"write_mp4 stream copy {minutes} min -> mp4: {best['seconds']:.2f} s "
          f"({best['bytes'] / 1e9:.2f} GB, {best['samples']} samples in {best['extents']} "
          f"extents; read back {frames} frames, boxes {' '.join(order)}; new disk space used "
          f"{best['space'] / 1e9:.2f} GB)")
    print(f"  its tracks from build_index of {len(segments)} segments: "
          f"{best['index_seconds']:.2f} s (the engine caches indexes)")
    print(f"cat of the segments:         {cat_s:.2f} s   write_mp4/cat = "
          f"{best['seconds'] / cat_s:.2f}x (target <= 1.5x)")
    if ffs:
        print(f"ffmpeg concat -c copy:       {min(ffs):.2f} s   write_mp4/ffmpeg = "
              f"{best['seconds'] / min(ffs):.2f}x (target <= 0.5x)")
    print(f"peak RSS per run, {minutes} min: " + ", ".join(
        f"{r['rss_mb']:.0f} MB (tracks ready at {r['rss_indexed_mb']:.0f} MB)" for r in ours)
        + f"; 1 min: {minute['rss_mb']:.0f} MB (the first run also builds the tracks from "
        "frame indexes; later runs load them)")
    print(f"synthetic day ({day['samples']} samples, 1-byte): write_mp4 {day['seconds']:.2f} s, "
          f"peak RSS {day['rss_mb']:.0f} MB with {day['rss_tracks_mb']:.0f} MB before writing "
          f"(the Track arrays)")
    shutil.rmtree(work, ignore_errors=True)


def check_output(path: Path) -> tuple[int, list[str]]:
    """Frames in the written file (from its tables) and its top-level boxes in order."""
    with av.open(str(path)) as container:
        frames = container.streams.video[0].frames
    kinds = []
    with open(path, "rb") as file:
        position, size = 0, path.stat().st_size
        while position < size:
            header = os.pread(file.fileno(), 16, position)
            length = int.from_bytes(header[:4], "big")
            if length == 1:
                length = int.from_bytes(header[8:16], "big")
            kinds.append(header[4:8].decode())
            position += length
    return frames, kinds


def fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True).stdout.strip()


def sync_at_end(path: Path) -> list[float]:
    """Beep onset minus the time of the frame showing that whole second, near the end."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        total = float(container.duration / 1e6)
        container.seek(int((total - 12) / video.time_base), stream=video)
        frames, samples, audio_start = {}, [], None
        for packet in container.demux(video, audio):
            for frame in packet.decode():
                t = float(frame.pts * frame.time_base)
                if t < total - 10:
                    continue
                if packet.stream is video:
                    wall = synth.frame_wall_time(frame.to_ndarray(format="gray"))
                    if wall.microsecond == 0:
                        frames[wall] = t
                else:
                    if audio_start is None:
                        audio_start = t
                    samples.append(frame.to_ndarray()[0])
    rate = audio.codec_context.sample_rate
    onsets = [audio_start + o for o in synth.beep_onsets(np.concatenate(samples), rate)]
    return [min((o - t for t in frames.values()), key=abs) for o in onsets]


def count_video(path: Path) -> tuple[int, float]:
    with av.open(str(path)) as container:
        frames = sum(1 for p in container.demux(video=0) if p.size)
        return frames, container.duration / 1e6


if __name__ == "__main__":
    main()
