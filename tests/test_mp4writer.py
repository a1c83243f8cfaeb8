"""The direct MP4/MOV writer: real synthetic segments in, files decoded by PyAV and GStreamer."""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from exports.media import extentcopy, mp4tables, mp4writer, synth
from exports.media.mp4writer import Mp4WriteError, SampleEntry, Track, WriteCancelled, write_mp4
from tests.media_helpers import (
    decode_with_gstreamer,
    decode_with_pyav,
    frame_steps_ok,
    run_gst_launch,
)
from tests.mp4_sources import concatenated

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SEGMENT_S = 2
STEP = timedelta(milliseconds=40)
W, H = 320, 240


def segments(folder: Path, specs: list[synth.SegmentSpec], suffix: str = ".mp4") -> list[Path]:
    """Consecutive segments (one per spec), each SEGMENT_S long, wall times continuing."""
    paths = []
    for index, spec in enumerate(specs):
        path = folder / f"seg{index}{suffix}"
        synth.write_segment(
            path,
            T0 + timedelta(seconds=SEGMENT_S * index),
            SEGMENT_S,
            spec,
            first_frame_number=index * 50,
        )
        paths.append(path)
    return paths


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    found = []
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8 : start + 16])[0], 16
        found.append((kind, start + header, start + size))
        start += size
    return found


def find(data: bytes, *path: bytes, start: int = 0, end: int | None = None) -> list[bytes]:
    """Payloads of every box at `path` (e.g. b"moov", b"trak", b"tkhd")."""
    hits = [(s, e) for kind, s, e in boxes(data, start, end) if kind == path[0]]
    if len(path) == 1:
        return [data[s:e] for s, e in hits]
    return [p for s, e in hits for p in find(data, *path[1:], start=s, end=e)]


def stsd_entries(data: bytes) -> list[list[bytes]]:
    """Per track, the fourccs of its stsd entries."""
    result = []
    for stbl in find(data, b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        stsd = find(stbl, b"stsd")[0]
        result.append([kind for kind, _, _ in boxes(stsd, 8)])
    return result


def check_plays(path: Path, tmp_path: Path, frames: int, first_wall=T0) -> None:
    """Both decoders show `frames` frames from first_wall on, one frame apart, audio too."""
    pyav = decode_with_pyav(path)
    gst = decode_with_gstreamer(path, W, H, tmp_path)
    for walls in (pyav.walls, gst):
        assert len(walls) == frames
        assert walls[0] == first_wall
        assert walls[-1] == first_wall + (frames - 1) * STEP
        assert frame_steps_ok(walls, STEP) == []
    assert pyav.times[0] == pytest.approx(0, abs=1e-6)
    assert np.allclose(np.diff(pyav.times), STEP.total_seconds())
    assert pyav.audio is not None and len(pyav.audio) > 0.9 * pyav.sample_rate * frames / 25


CASES = {
    "h264-aac-mp4": (synth.SegmentSpec(), "mp4"),
    "h264-bframes-aac-mp4": (synth.SegmentSpec(bframes=2), "mp4"),
    "h264-bframes-aac-mov": (synth.SegmentSpec(bframes=2), "mov"),
    "hevc-aac-mp4": (synth.SegmentSpec(vcodec="hevc", bframes=2), "mp4"),
    "mjpeg-pcm_mulaw-mov": (
        synth.SegmentSpec(vcodec="mjpeg", acodec="pcm_mulaw", sample_rate=8000),
        "mov",
    ),
    "h264-pcm_s16le-mov": (synth.SegmentSpec(acodec="pcm_s16le"), "mov"),
    "h264-pcm_alaw-mov": (synth.SegmentSpec(acodec="pcm_alaw", sample_rate=8000), "mov"),
}


@pytest.mark.parametrize("case", CASES)
def test_two_segments_play_back_to_back_in_both_decoders(case, tmp_path):
    spec, brand = CASES[case]
    paths = segments(tmp_path, [spec, spec], suffix=f".{brand}")
    tracks, sources = concatenated(paths)
    out = tmp_path / f"out.{brand}"
    size = write_mp4(out, tracks, sources, brand=brand)
    assert size == out.stat().st_size
    check_plays(out, tmp_path, frames=100)
    data = out.read_bytes()
    kinds = [kind for kind, _, _ in boxes(data)]
    assert kinds == [b"ftyp", b"moov", b"free", b"mdat"]  # moov first: plays while downloading
    assert find(data, b"ftyp")[0][:4] == (b"qt  " if brand == "mov" else b"isom")
    has_ctts = bool(find(data, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"ctts"))
    assert has_ctts == (spec.bframes > 0)
    if spec.acodec.startswith("pcm"):
        pyav = decode_with_pyav(out)
        assert len(pyav.audio) == 2 * SEGMENT_S * spec.sample_rate  # every PCM frame, once


def test_hevc_sample_entry_says_where_parameter_sets_are(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec(vcodec="hevc")])
    tracks, sources = concatenated(paths, with_audio=False)
    in_band = tracks[0].entries[0].hevc_in_band
    out = tmp_path / "out.mp4"
    write_mp4(out, tracks, sources)
    assert stsd_entries(out.read_bytes())[0] == [b"hev1" if in_band else b"hvc1"]
    for flag, fourcc in ((True, b"hev1"), (False, b"hvc1")):
        tracks[0].entries[0] = replace(tracks[0].entries[0], hevc_in_band=flag)
        write_mp4(out, tracks, sources)
        assert stsd_entries(out.read_bytes())[0] == [fourcc]
        assert len(decode_with_pyav(out).walls) == 50


def test_sps_change_between_segments_gets_a_second_sample_entry(tmp_path):
    first = synth.SegmentSpec(crf=35)
    second = synth.SegmentSpec(crf=20, bframes=2, x264_extra={"ref": 2})
    paths = segments(tmp_path, [first, second, first])
    tracks, sources = concatenated(paths)
    assert len(tracks[0].entries) == 2
    out = tmp_path / "out.mp4"
    write_mp4(out, tracks, sources)
    data = out.read_bytes()
    assert stsd_entries(data)[0] == [b"avc1", b"avc1"]
    stsc = find(data, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsc")[0]
    rows = np.frombuffer(stsc, ">u4", offset=8).reshape(-1, 3)
    assert set(rows[:, 2]) == {1, 2}
    check_plays(out, tmp_path, frames=150)


def test_edit_list_hides_frames_before_presentation_start_in_both_decoders(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec(bframes=2)] * 2)
    tracks, sources = concatenated(paths)
    video = tracks[0]
    frame = int(video.duration[0])
    video.presentation_start = 5 * frame  # an empty edit of 5 frames, then frame 5 on
    out = tmp_path / "out.mp4"
    write_mp4(out, tracks, sources)
    pyav = decode_with_pyav(out)
    gst = decode_with_gstreamer(out, W, H, tmp_path)
    for walls in (pyav.walls, gst):
        assert len(walls) == 95
        assert walls[0] == T0 + 5 * STEP
    assert pyav.times[0] == pytest.approx(0.2)  # keeps its place on the shared timeline
    elst = find(out.read_bytes(), b"moov", b"trak", b"edts", b"elst")[0]
    count, *fields = struct.unpack(">I" + "Iihh" * 2, elst[4:])
    assert count == 2 and fields[1] == -1  # the empty edit
    assert fields[5] == 5 * frame - int(video.dts[0])  # media time of frame 5


def test_title_and_creation_time_are_read_back(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec()])
    tracks, sources = concatenated(paths)
    for brand in ("mp4", "mov"):
        out = tmp_path / f"out.{brand}"
        write_mp4(out, tracks, sources, brand=brand, creation_time=T0, title="Gate 3")
        with av.open(str(out)) as container:
            assert container.metadata.get("title") == "Gate 3"
            assert container.metadata["creation_time"].startswith("2026-03-01T12:00:00")


def test_chunks_interleave_audio_and_video_within_a_second(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec(acodec="pcm_s16le")] * 2, suffix=".mov")
    tracks, sources = concatenated(paths)
    out = tmp_path / "out.mov"
    write_mp4(out, tracks, sources, brand="mov")
    with av.open(str(out)) as container:
        times = [(p.pos, float(p.dts * p.time_base)) for p in container.demux() if p.size]
    times.sort()
    latest = np.maximum.accumulate([t for _, t in times])
    assert (latest - [t for _, t in times]).max() <= mp4writer.CHUNK_SECONDS + 0.05


def test_samples_are_copied_in_a_few_large_extents(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec(bframes=2)] * 3)
    tracks, sources = concatenated(paths)
    tables = [track.tables(number) for number, track in enumerate(tracks, 1)]
    _, runs = mp4writer._layout(tables, len(sources))
    assert len(runs.source) <= 3 * len(paths)  # one per file, plus a re-ordered audio tail each
    assert int(runs.length.sum()) == sum(int(t.size.sum()) for t in tracks)


@pytest.mark.parametrize("method", extentcopy.METHODS)
def test_every_copy_technique_writes_the_same_file(method, tmp_path, monkeypatch):
    paths = segments(tmp_path, [synth.SegmentSpec()] * 2)
    tracks, sources = concatenated(paths)
    reference = tmp_path / "auto.mp4"
    write_mp4(reference, tracks, sources)
    monkeypatch.setattr(extentcopy, "METHOD", method)  # forces the technique, no OS mocking
    monkeypatch.setattr(extentcopy, "READ_BLOCK", 4096)  # several read/write rounds per extent
    out = tmp_path / f"{method}.mp4"
    write_mp4(out, tracks, sources)
    assert out.read_bytes() == reference.read_bytes()


def test_copy_falls_back_when_the_kernel_refuses_copy_file_range(tmp_path):
    """Across filesystems of different types (tmpfs -> disk) copy_file_range says EXDEV."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem to copy from")
    source = shm / f"mp4w-{os.getpid()}.bin"
    source.write_bytes(bytes(range(256)) * 64)
    try:
        with open(source, "rb") as src, open(tmp_path / "out.bin", "wb") as out:
            try:
                os.copy_file_range(src.fileno(), out.fileno(), 16, 0, 0)
                pytest.skip("this kernel copies across these filesystems")
            except OSError as error:
                assert error.errno in extentcopy.REFUSED
            copier = extentcopy.ExtentCopier(out.fileno())
            copier.copy(src.fileno(), 100, 10, 5000)
            assert copier.method == "sendfile"
        assert (tmp_path / "out.bin").read_bytes()[10:] == source.read_bytes()[100:5100]
    finally:
        source.unlink()


def test_progress_rises_to_one_and_cancel_stops_and_removes_the_file(tmp_path, monkeypatch):
    paths = segments(tmp_path, [synth.SegmentSpec()] * 2)
    tracks, sources = concatenated(paths)
    monkeypatch.setattr(mp4writer, "COPY_PIECE", 1000)
    monkeypatch.setattr(mp4writer, "REPORT_SECONDS", 0)  # report between every piece
    seen = []
    write_mp4(tmp_path / "out.mp4", tracks, sources, progress=seen.append)
    assert len(seen) > 10 and seen == sorted(seen) and seen[-1] == 1.0
    polls = []
    with pytest.raises(WriteCancelled):
        write_mp4(
            tmp_path / "cancel.mp4",
            tracks,
            sources,
            cancelled=lambda: polls.append(1) or len(polls) > 3,
        )
    assert not (tmp_path / "cancel.mp4").exists()


def test_bad_tracks_are_refused_before_anything_is_written(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec(acodec=None)])
    (video,), sources = concatenated(paths)
    out = tmp_path / "out.mp4"
    bad = {
        "decode times must be strictly increasing": replace(video, dts=video.dts[::-1].copy()),
        "composition offsets": replace(video, cts=video.cts - 1000),
        "source index": replace(video, source=video.source + 1),
        "cannot write": replace(video, entries=[SampleEntry("vp9")]),
        "presentation_start": replace(video, presentation_start=-1),
    }
    for message, track in bad.items():
        with pytest.raises(Mp4WriteError, match=message):
            write_mp4(out, [track], sources)
        assert not out.exists()
    pcm = Track(
        "audio",
        16000,
        [SampleEntry("pcm_s16le", sample_rate=16000, channels=1)],
        *[np.zeros(1, t) for t in (np.int64, np.int32)],
        np.ones(1, np.int32),
        np.ones(1, bool),
        np.full(1, 2, np.int32),
        np.zeros(1, np.int32),
        np.zeros(1, np.int64),
        np.zeros(1, np.uint8),
    )
    with pytest.raises(Mp4WriteError, match="mov only"):
        write_mp4(out, [pcm], sources, brand="mp4")


def test_source_shorter_than_its_index_fails_cleanly(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec()])
    tracks, sources = concatenated(paths)
    with open(paths[0], "r+b") as f:
        f.truncate(os.path.getsize(paths[0]) // 2)
    with pytest.raises(OSError) as raised:
        write_mp4(tmp_path / "out.mp4", tracks, sources)
    assert raised.value.errno == errno.EIO
    assert not (tmp_path / "out.mp4").exists()


def test_offsets_past_4_gib_use_co64_and_a_64_bit_mdat(tmp_path):
    """Tables only: three 2 GiB samples (no bytes are copied to build the header)."""
    big = 2**31 - 1
    track = Track(
        "video",
        25,
        [SampleEntry("mjpeg", width=W, height=H)],
        dts=np.arange(3, dtype=np.int64),
        cts=np.zeros(3, np.int32),
        duration=np.ones(3, np.int32),
        sync=np.ones(3, bool),
        size=np.full(3, big, np.int32),
        source=np.arange(3, dtype=np.int32),
        offset=np.zeros(3, np.int64),
        entry=np.zeros(3, np.uint8),
    )
    tables = [track.tables()]
    chunks, runs = mp4writer._layout(tables, 3)
    data_size = int(runs.target[-1] + runs.length[-1])
    head = mp4writer._header(tables, chunks, "mp4", None, None, data_size)
    head = b"".join(mp4writer._pieces(head))
    assert len(head) % mp4writer.BLOCK == 0
    assert [k for k, _, _ in boxes(head)][:2] == [b"ftyp", b"moov"]
    stbl = find(head, b"moov", b"trak", b"mdia", b"minf", b"stbl")[0]
    assert not find(stbl, b"stco")
    co64 = find(stbl, b"co64")[0]
    offsets = np.frombuffer(co64, ">u8", offset=8)
    # each 2 GiB run starts block-aligned, as in its source (offset 0)
    assert offsets.tolist() == [len(head) + start for start in (0, 2**31, 2**32)]
    assert head[-16:-8] == struct.pack(">I4s", 1, b"mdat")
    assert struct.unpack(">Q", head[-8:])[0] == 2**32 + big + 16
    assert not find(stbl, b"stss")  # every sample is a sync sample


@pytest.mark.parametrize("brand", ["mp4", "mov"])
def test_colour_pixel_aspect_and_channel_layout_reach_the_demuxer(brand, tmp_path):
    spec = synth.SegmentSpec(acodec="pcm_s16le" if brand == "mov" else "aac")
    paths = segments(tmp_path, [spec], suffix=f".{brand}")
    tracks, sources = concatenated(paths)
    # BT.709 primaries/transfer/matrix, full range; 4:3 pixels
    tracks[0].entries[0] = replace(tracks[0].entries[0], color=(2, 1, 1, 1), pixel_aspect=(4, 3))
    out = tmp_path / f"out.{brand}"
    write_mp4(out, tracks, sources, brand=brand)
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.color_primaries, video.codec_context.color_trc) == (1, 1)
        assert video.codec_context.colorspace == 1
        assert video.sample_aspect_ratio == Fraction(4, 3)
        assert audio.codec_context.layout.name == "mono"
    colr = find(out.read_bytes(), *[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])[0]
    assert (b"nclc" if brand == "mov" else b"nclx\x00\x01\x00\x01\x00\x01\x80") in colr


def test_runs_keep_their_source_block_alignment_and_still_play(tmp_path, monkeypatch):
    """Zero padding before block-aligned runs (for reflinks) is skipped by both decoders."""
    monkeypatch.setattr(mp4writer, "ALIGN_MIN", 1)  # align every run, not only long ones
    paths = segments(tmp_path, [synth.SegmentSpec(bframes=2)] * 2)
    tracks, sources = concatenated(paths)
    out = tmp_path / "out.mp4"
    write_mp4(out, tracks, sources)
    positions = {0: [], 1: []}
    with av.open(str(out)) as container:
        for packet in container.demux():
            if packet.size:
                positions[packet.stream.index].append(packet.pos)
    for index, track in enumerate(tracks):
        assert ((np.array(positions[index]) - track.offset) % mp4writer.BLOCK == 0).all()
    check_plays(out, tmp_path, frames=100)


def test_plays_when_read_front_to_back_like_a_download(tmp_path):
    """GStreamer in push mode (pushfilesrc: no seeking back) gets every frame: the moov is
    read before the samples, as a browser reading a download does."""
    paths = segments(tmp_path, [synth.SegmentSpec(bframes=2)] * 2)
    tracks, sources = concatenated(paths)
    out = tmp_path / "out.mp4"
    write_mp4(out, tracks, sources)
    raw = tmp_path / "push.gray"
    run_gst_launch(
        "pushfilesrc",
        f"location={out}",
        "!",
        "qtdemux",
        "name=d",
        "d.video_0",
        "!",
        "queue",
        "!",
        "decodebin",
        "!",
        "videoconvert",
        "!",
        f"video/x-raw,format=GRAY8,width={W},height={H}",
        "!",
        "filesink",
        f"location={raw}",
        "d.audio_0",
        "!",
        "queue",
        "!",
        "fakesink",
    )
    frames = np.fromfile(raw, np.uint8).reshape(-1, H, W)  # 320 wide: rows need no padding
    walls = [synth.frame_wall_time(frame) for frame in frames]
    assert len(walls) == 100 and walls[0] == T0 and frame_steps_ok(walls, STEP) == []


def test_pcm_gap_keeps_the_later_audio_in_place(tmp_path):
    paths = segments(tmp_path, [synth.SegmentSpec(acodec="pcm_s16le")], suffix=".mov")
    tracks, sources = concatenated(paths)
    whole = tmp_path / "whole.mov"
    write_mp4(whole, tracks, sources, brand="mov")
    audio = tracks[1]
    keep = np.ones(len(audio.dts), bool)
    keep[10:13] = False  # three packets missing: a gap in the audio
    names = ("dts", "cts", "duration", "sync", "size", "source", "offset", "entry")
    gapped = replace(audio, **{name: getattr(audio, name)[keep] for name in names})
    out = tmp_path / "gap.mov"
    write_mp4(out, [tracks[0], gapped], sources, brand="mov")
    before, after = decode_with_pyav(whole).audio, decode_with_pyav(out).audio
    start, end = (int(audio.dts[i] - audio.dts[0]) for i in (10, 13))
    assert len(after) == len(before)
    assert not after[start:end].any()
    assert np.array_equal(after[:start], before[:start])
    assert np.array_equal(after[end:], before[end:])


def test_tables_spilled_to_temporary_files_write_the_same_file(tmp_path, monkeypatch):
    """A day of samples keeps its per-sample tables in temporary files: forced here after a
    few rows, the file is the same to the byte (B-frames: stts, ctts, stss, stsz all used)."""
    paths = segments(tmp_path, [synth.SegmentSpec(bframes=2)] * 2)
    tracks, sources = concatenated(paths)
    reference = tmp_path / "memory.mp4"
    write_mp4(reference, tracks, sources)
    monkeypatch.setattr(mp4tables, "SPILL_ROWS", 3)
    monkeypatch.setattr(mp4tables, "READ_ROWS", 5)
    spilled = tmp_path / "spilled.mp4"
    write_mp4(spilled, tracks, sources)
    assert spilled.read_bytes() == reference.read_bytes()
    check_plays(spilled, tmp_path, frames=100)
