"""The frame index: kinds checked against the codec's structure and FFmpeg's decoder, bytes
against the file, MPEG-TS wraps undone per stream, growing files extended, damage reported."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from django.db import OperationalError, connection

from exports import frame_cache
from exports.archive import index_camera
from exports.media import nal, synth
from exports.media.frameindex import WRAP, Kind, SegmentIndex, build_index
from exports.models import Camera, Segment, SegmentFrameIndex
from tests.media_helpers import NOT_A_RECORDING

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
SMALL = {"width": 160, "height": 120}
I_PIC, P_PIC, B_PIC = 1, 2, 3  # AVPictureType


def segment(folder: Path, name: str, spec: synth.SegmentSpec, seconds=2.0, **kwargs) -> Path:
    path = folder / name
    synth.write_segment(path, T0, seconds, spec, **kwargs)
    return path


def decoded_pictures(path: Path) -> dict[int, tuple[int, bool]]:
    """pts -> (picture type, key frame flag) as FFmpeg's decoder reports each frame."""
    with av.open(str(path)) as container:
        return {
            frame.pts: (int(frame.pict_type), frame.key_frame)
            for frame in container.decode(video=0)
        }


def demuxed(path: Path, media="video") -> list[av.Packet]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, media)[0]
        return [packet for packet in container.demux(stream) if packet.size]


def kinds(index) -> str:
    """One letter per packet in decode order: I(DR) O(pen) R(ecovery) L(eading) l(eading ok) -."""
    return "".join("IORLl-"[k - 1] for k in index.kind)


def check_against_ffmpeg(path: Path, index) -> dict[int, tuple[int, bool]]:
    """Every random access point is a keyframe for the demuxer and decodes as an I picture
    (recovery points: a P picture); leading pictures are B pictures shown before their point."""
    pictures = decoded_pictures(path)
    keyframes = [packet.is_keyframe for packet in demuxed(path)]
    assert len(keyframes) == len(index.video) == len(pictures)
    for kind, key, pts in zip(index.video.kind, keyframes, index.video.pts, strict=True):
        picture_type, _ = pictures[int(pts)]
        if kind in (Kind.IDR, Kind.OPEN):
            assert key and picture_type == I_PIC
        elif kind == Kind.RECOVERY:
            assert key and picture_type == P_PIC
        else:
            assert not key and picture_type in (P_PIC, B_PIC)
            if kind in (Kind.LEADING, Kind.LEADING_OK):
                assert picture_type == B_PIC
    return pictures


# -- kinds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_h264_closed_gop_with_b_frames_has_an_idr_per_gop_and_nothing_leading(tmp_path, suffix):
    path = segment(tmp_path, "closed" + suffix, synth.SegmentSpec(bframes=2, **SMALL))
    index = build_index(path)
    assert kinds(index.video) == ("I" + "-" * 24) * 2
    check_against_ffmpeg(path, index)
    assert np.all(np.diff(index.video.dts) > 0)
    assert sorted(np.diff(np.sort(index.video.pts)).tolist()) == [index.video.duration[0]] * 49


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_h264_open_gop_marks_the_non_idr_i_picture_open_and_its_b_frames_leading(tmp_path, suffix):
    spec = synth.SegmentSpec(bframes=2, x264_extra={"open-gop": 1}, **SMALL)
    path = segment(tmp_path, "open" + suffix, spec)
    index = build_index(path)
    video = index.video
    assert kinds(video) == "I" + "-" * 22 + "OLL" + "-" * 24
    check_against_ffmpeg(path, index)
    open_point = int(np.flatnonzero(video.kind == Kind.OPEN)[0])
    leading = np.flatnonzero(video.kind == Kind.LEADING)
    # Shown just before the I picture they follow in decode order: the previous GOP's tail.
    assert np.all(video.pts[leading] < video.pts[open_point])
    assert np.all(video.pts[leading] > video.pts[:open_point].max() - 3 * video.duration[0])


def test_h264_open_gop_leading_pictures_do_not_decode_from_their_open_point(tmp_path):
    spec = synth.SegmentSpec(bframes=2, x264_extra={"open-gop": 1}, **SMALL)
    path = segment(tmp_path, "open.mkv", spec)
    video = build_index(path).video
    start = int(np.flatnonzero(video.kind == Kind.OPEN)[0])
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size][start:]
        decoder = av.CodecContext.create("h264", "r")
        decoder.extradata = container.streams.video[0].codec_context.extradata
        shown = [frame.pts for packet in packets for frame in decoder.decode(packet)]
        shown += [frame.pts for frame in decoder.decode(None)]
    # FFmpeg drops what references the missing GOP: exactly the frames indexed as LEADING.
    assert sorted(shown) == sorted(video.pts[start:][video.kind[start:] != Kind.LEADING].tolist())


@pytest.mark.parametrize(("suffix", "bitstream"), [(".mp4", "avcc"), (".ts", "annexb")])
def test_hevc_cra_with_rasl_pictures(tmp_path, suffix, bitstream):
    # Mini-GOPs of 4 that end on the GOP boundary: libx265 puts 3 RASL pictures after each CRA.
    spec = synth.SegmentSpec(vcodec="hevc", gop=24, bframes=3, **SMALL)
    path = segment(tmp_path, "cra" + suffix, spec)
    index = build_index(path)
    assert kinds(index.video) == "I" + "-" * 20 + "OLLL" + "-" * 20 + "OLLL" + "-"
    check_against_ffmpeg(path, index)
    assert index.video.info.bitstream == bitstream


def test_hevc_radl_pictures_are_leading_but_decodable(tmp_path):
    path = tmp_path / "radl.mkv"
    write_x265(path, "keyint=24:min-keyint=24:scenecut=0:bframes=3:open-gop=0:radl=3", frames=50)
    index = build_index(path)
    assert kinds(index.video) == "I" + "-" * 20 + "Illl" + "-" * 20 + "Illl" + "-"
    check_against_ffmpeg(path, index)


def test_h264_intra_refresh_has_recovery_points_and_one_idr(tmp_path):
    spec = synth.SegmentSpec(x264_extra={"intra-refresh": 1}, **SMALL)
    path = segment(tmp_path, "refresh.ts", spec, seconds=3.0)
    video = build_index(path).video
    assert kinds(video) == ("I" + "-" * 24 + ("R" + "-" * 24) * 2)
    recovering = video.recovery[video.kind == Kind.RECOVERY]
    assert np.all(recovering > 0) and np.all(video.recovery[video.kind != Kind.RECOVERY] == 0)
    check_against_ffmpeg(path, build_index(path))


def test_mjpeg_frames_and_audio_frames_are_all_idr(tmp_path):
    spec = synth.SegmentSpec(vcodec="mjpeg", acodec="pcm_mulaw", sample_rate=8000, **SMALL)
    index = build_index(segment(tmp_path, "mjpeg.avi", spec))
    assert len(index.video) == 50 and set(index.video.kind) == {Kind.IDR}
    assert index.video.info.bitstream == "" and index.video.info.nal_length_size == 0
    assert index.video.info.pix_fmt == "yuvj420p"
    assert index.audio.info.codec == "pcm_mulaw" and set(index.audio.kind) == {Kind.IDR}


@pytest.mark.parametrize(
    ("suffix", "bitstream", "length", "adts"),
    [
        (".mp4", "avcc", 4, False),
        (".mkv", "avcc", 4, False),
        (".ts", "annexb", 0, True),
        (".avi", "annexb", 0, False),
    ],
)
def test_bitstream_form_and_adts_are_recorded(tmp_path, suffix, bitstream, length, adts):
    index = build_index(segment(tmp_path, "s" + suffix, synth.SegmentSpec(**SMALL)))
    assert (index.video.info.bitstream, index.video.info.nal_length_size) == (bitstream, length)
    assert index.audio.info.codec == "aac" and index.audio.info.adts is adts
    assert index.video.info.frame_rate == 25 and index.audio.info.sample_rate == 16000
    assert kinds(index.video) == ("I" + "-" * 24) * 2


def test_full_range_colour_properties_are_recorded(tmp_path):
    path = tmp_path / "full.mp4"
    write_x264_full_range(path)
    info = build_index(path).video.info
    # AVCOL_RANGE_JPEG, and BT.709 primaries, transfer and matrix.
    assert (info.color_range, info.color_primaries, info.color_trc, info.colorspace) == (2, 1, 1, 1)
    assert info.pix_fmt == "yuvj420p"


def test_nal_header_reading_handles_emulation_prevention_and_long_sei_messages():
    assert nal.rbsp(b"\x00\x00\x03\x01\x00\x00\x03\x00") == b"\x00\x00\x01\x00\x00\x00"
    reader = nal.BitReader(bytes([0b10100110, 0b01000010, 0b10000000]))
    assert [reader.ue(), reader.ue(), reader.ue(), reader.ue(), reader.se()] == [0, 1, 2, 3, -2]
    # first_mb_in_slice 0 ("1"), slice_type 7 ("0001000": I), with 00 00 03 escaping after it.
    slice_nal = bytes([0x01, 0b10001000, 0x00, 0x00, 0x03, 0x01])
    assert nal.h264_slice_type(slice_nal) == 2
    # A 300-byte user data message (size coded 0xFF 0x2D) before a recovery point of 8 frames
    # (ue 8 = "0001001").
    user_data = bytes([5, 0xFF, 0x2D]) + b"\x11" * 300
    recovery = bytes([6, 1, 0b00010010])
    sei = bytes([0x06]) + user_data + recovery + b"\x80"
    assert nal.sei_recovery_frame_cnt(sei) == 8
    assert nal.sei_recovery_frame_cnt(bytes([0x06]) + user_data + b"\x80") is None


# -- bytes and timestamps ---------------------------------------------------------------------


def test_mp4_pos_and_size_are_the_sample_bytes_in_the_file(tmp_path):
    path = segment(tmp_path, "s.mp4", synth.SegmentSpec(bframes=2, **SMALL))
    index = build_index(path)
    data = path.read_bytes()
    for media, stream in (("video", index.video), ("audio", index.audio)):
        packets = demuxed(path, media)
        assert len(packets) == len(stream)
        for packet, pos, size in zip(packets, stream.pos, stream.size, strict=True):
            assert data[pos : pos + size] == bytes(packet)


def test_missing_durations_come_from_the_next_frame_or_the_nominal_rate(tmp_path):
    # Matroska gives no dts for the first packets of a B-frame stream: derived, increasing.
    path = segment(tmp_path, "s.mkv", synth.SegmentSpec(bframes=2, **SMALL))
    video = build_index(path).video
    assert [packet.dts for packet in demuxed(path)][:2] == [None, None]
    assert np.all(np.diff(video.dts) > 0) and np.all(video.dts <= video.pts)
    from exports.media.frameindex import _fill_durations

    pts = np.array([0, 80, 40, 120], dtype=np.int64)
    duration = np.array([40, 0, 0, 0], dtype=np.int64)
    _fill_durations(pts, duration, duration == 0, nominal=33)
    assert duration.tolist() == [40, 40, 40, 33]


def test_avi_presentation_order_comes_from_the_picture_order_count(tmp_path):
    # AVI stores no presentation times: FFmpeg's pts just increase in decode order.
    spec = synth.SegmentSpec(bframes=2, x264_extra={"open-gop": 1}, **SMALL)
    avi = build_index(segment(tmp_path, "s.avi", spec)).video
    mkv = build_index(segment(tmp_path, "s.mkv", spec)).video
    demuxer_pts = [packet.pts for packet in demuxed(tmp_path / "s.avi")]
    assert demuxer_pts == sorted(demuxer_pts)
    assert kinds(avi) == kinds(mkv) == "I" + "-" * 22 + "OLL" + "-" * 24
    assert np.array_equal(np.argsort(avi.pts), np.argsort(mkv.pts))
    assert np.all(np.diff(np.sort(avi.pts)) == 1) and np.all(avi.dts <= avi.pts)


def test_mpegts_33_bit_wrap_is_undone_per_stream_by_this_code(tmp_path):
    # Timestamps start 2 s before 2**33 ticks of 90 kHz and wrap inside the file.
    origin = Fraction(WRAP - 2 * 90000, 90000)
    path = segment(
        tmp_path, "wrap.ts", synth.SegmentSpec(bframes=2, **SMALL), 4.0, pts_origin=float(origin)
    )
    index = build_index(path)
    for stream, step in ((index.video, 3600), (index.audio, 5760)):
        assert stream.wraps == 1
        assert np.all(np.diff(stream.dts) > 0)
        assert stream.pts.min() < WRAP < stream.pts.max()
        assert np.all(np.diff(np.sort(stream.pts)) == step)
    # FFmpeg left to itself unwraps (here: pulls the first 2 s below zero), so the index opens
    # TS files with correct_ts_overflow=0 and sees the 33-bit values drop once per stream.
    for options, drops in (({}, 0), ({"correct_ts_overflow": "0"}, 1)):
        with av.open(str(path), options=options) as container:
            packets = [(p.stream.type, p.dts) for p in container.demux() if p.size]
        for media in ("video", "audio"):
            dts = [value for kind, value in packets if kind == media]
            assert sum(b < a - WRAP // 2 for a, b in zip(dts, dts[1:], strict=False)) == drops


def test_mpegts_streams_starting_on_either_side_of_the_wrap_stay_aligned(tmp_path):
    # Video's first pts is just below 2**33, audio's just above (the AAC encoder moves it
    # 1024 samples earlier than asked), so the audio packets carry small raw numbers.
    path = tmp_path / "edge.ts"
    write_ts_across_wrap(path, video_first=WRAP - 7200, audio_first=WRAP + 7200)
    index = build_index(path)
    assert index.video.pts[0] < WRAP < index.audio.pts[0] < index.video.pts[0] + 90000
    assert index.video.wraps == 1 and index.audio.wraps == 0
    assert min(packet.pts for packet in demuxed(path, "audio")) < 90000


# -- growing, damaged, empty ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "origin"), [(".ts", 0.0), (".ts", (WRAP - 2 * 90000) / 90000), (".mkv", 0.0)]
)
def test_growing_file_index_extends_to_what_a_fresh_build_gives(tmp_path, suffix, origin):
    spec = synth.SegmentSpec(bframes=2, **SMALL)
    full = segment(tmp_path, "full" + suffix, spec, 4.0, pts_origin=origin)
    data = full.read_bytes()
    growing = tmp_path / ("growing" + suffix)
    growing.write_bytes(data[: len(data) * 2 // 5])
    first = build_index(growing)
    assert 0 < len(first.video) < 100
    with growing.open("ab") as out:
        out.write(data[len(data) * 2 // 5 :])
    extended = build_index(growing, SegmentIndex.from_bytes(first.to_bytes(), growing))
    fresh = build_index(growing)
    assert len(fresh.video) == 100
    assert extended.to_bytes() == fresh.to_bytes()
    if suffix == ".ts":  # demuxing resumed near the old end instead of at the start
        assert extended.packets_read < fresh.packets_read - len(first.video)
    else:
        assert extended.packets_read == fresh.packets_read
    assert extended.video.wraps == extended.audio.wraps == (1 if origin else 0)


def test_index_of_a_replaced_file_is_not_extended_from_the_old_one(tmp_path):
    path = segment(tmp_path, "s.ts", synth.SegmentSpec(**SMALL), 1.0)
    old = build_index(path)
    segment(tmp_path, "s.ts", synth.SegmentSpec(bframes=2, **SMALL), 3.0, pts_origin=100.0)
    assert path.stat().st_size > old.size
    replaced = build_index(path, old)
    assert replaced.to_bytes() == build_index(path).to_bytes()
    assert len(replaced.video) == 75 and replaced.video.pts[0] >= 100 * 90000


def test_truncated_mp4_with_index_in_front_indexes_up_to_the_damage(tmp_path):
    source = segment(tmp_path, "s.mp4", synth.SegmentSpec(**SMALL))
    path = tmp_path / "fast.mp4"
    remux(source, path, {"movflags": "faststart"})
    full = build_index(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    index = build_index(path)
    assert "file ends inside" in index.damaged
    assert 0 < len(index.video) < len(full.video)
    assert index.to_bytes() != full.to_bytes()
    read = index.video
    assert np.all(read.pos + read.size <= path.stat().st_size)


def test_unreadable_file_gives_an_empty_damaged_index(tmp_path):
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"not a recording\n" * 200)
    index = build_index(path)
    assert index.video is None and index.audio is None and index.damaged


def test_file_without_video_has_no_video_index(tmp_path):
    path = tmp_path / "sound.mkv"
    source = segment(tmp_path, "s.mkv", synth.SegmentSpec(**SMALL))
    remux(source, path, {}, media=("audio",))
    index = build_index(path)
    assert index.video is None and len(index.audio) > 0 and not index.damaged


# -- serialisation ----------------------------------------------------------------------------


def test_serialised_index_round_trips_and_is_a_few_bytes_per_frame(tmp_path):
    spec = synth.SegmentSpec(bframes=2, x264_extra={"open-gop": 1}, **SMALL)
    path = segment(tmp_path, "s.ts", spec, 10.0)
    index = build_index(path)
    data = index.to_bytes()
    back = SegmentIndex.from_bytes(data, path)
    assert back.to_bytes() == data
    for old, new in zip(index.streams(), back.streams(), strict=True):
        assert old.info == new.info and old.wraps == new.wraps
        for name in ("pts", "dts", "duration", "pos", "size", "kind", "recovery", "guessed"):
            assert np.array_equal(getattr(old, name), getattr(new, name))
            assert getattr(old, name).dtype == getattr(new, name).dtype
    frames = len(index.video) + len(index.audio)
    assert len(data) / frames < 8
    for damaged in (b"XXXX" + data[4:], data[:-10], data[:5]):
        with pytest.raises(ValueError):
            SegmentIndex.from_bytes(damaged, path)


# -- small generators -------------------------------------------------------------------------


def _pictures(count: int, width=160, height=120):
    for number in range(count):
        picture = synth.encode_picture(T0, width, height, number)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts, frame.time_base = number, Fraction(1, 25)
        yield frame


def write_x265(path: Path, params: str, frames: int) -> None:
    """HEVC with x265 settings synth does not expose (RADL pictures need a closed GOP)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"preset": "ultrafast", "x265-params": params + ":log-level=error"}
        for frame in _pictures(frames):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_x264_full_range(path: Path) -> None:
    """A full-range (yuvj420p) BT.709 H.264 stream, as some cameras send."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuvj420p"
        context = stream.codec_context
        context.color_primaries = context.color_trc = context.colorspace = 1  # BT.709
        for frame in _pictures(10):
            container.mux(stream.encode(frame.reformat(format="yuvj420p")))
        container.mux(stream.encode(None))


def remux(source: Path, target: Path, options: dict, media=("video", "audio")) -> None:
    with av.open(str(source)) as inp, av.open(str(target), "w", options=options) as out:
        streams = [getattr(inp.streams, name)[0] for name in media]
        outs = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(streams):
            if packet.size:
                packet.stream = outs[packet.stream.index]
                out.mux(packet)


def write_ts_across_wrap(path: Path, video_first: int, audio_first: int, frames=25) -> None:
    """MPEG-TS with H.264 and AAC whose streams start at the given 90 kHz timestamps."""
    with av.open(str(path), "w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.codec_context.layout = "mono"
        for number, frame in enumerate(_pictures(frames)):
            frame.pts, frame.time_base = video_first + number * 3600, Fraction(1, 90000)
            container.mux(video.encode(frame))
        samples = np.zeros((1, 1024), dtype=np.float32)
        for number in range(frames * 16000 // 25 // 1024):
            sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            sound.sample_rate, sound.time_base = 16000, Fraction(1, 90000)
            sound.pts = audio_first + number * 5760
            container.mux(audio.encode(sound))
        container.mux(video.encode(None) + audio.encode(None))


# -- the cache beside the archive index -------------------------------------------------------


def archive_camera(folder: Path, names: list[str], seconds=2.0) -> Camera:
    for number, name in enumerate(names):
        start = T0 + timedelta(seconds=seconds * number)
        synth.write_segment(folder / name, start, seconds, synth.SegmentSpec(bframes=2, **SMALL))
    camera = Camera.objects.create(camera_id="cam", archive_path=str(folder))
    index_camera(camera)
    assert Segment.objects.filter(camera=camera).count() == len(names)
    return camera


@pytest.mark.django_db
def test_second_export_takes_the_index_from_the_cache_without_reading_the_file(archive_dir):
    camera = archive_camera(archive_dir, ["2026-03-01_08-00-00.mp4", "2026-03-01_08-00-02.mp4"])
    lookup = frame_cache.indexer(camera, Segment.objects.filter(camera=camera))
    paths = sorted(archive_dir.iterdir())
    before = frame_cache.counts.copy()
    first = [lookup(path).to_bytes() for path in paths]
    stamps = list(SegmentFrameIndex.objects.order_by("id").values_list("updated_at", flat=True))
    assert len(stamps) == 2
    # Same size and mtime but junk inside: only an index that never opens the file is right.
    for path in paths:
        stat = path.stat()
        path.write_bytes(NOT_A_RECORDING[:1] * stat.st_size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert [lookup(path).to_bytes() for path in paths] == first
    assert list(SegmentFrameIndex.objects.order_by("id").values_list("updated_at", flat=True)) == (
        stamps
    )
    assert frame_cache.counts - before == Counter(built=2, hit=2)
    # A new mtime makes the cached row stale: the junk is read and reported.
    os.utime(paths[0])
    assert lookup(paths[0]).damaged


@pytest.mark.django_db
def test_growing_segment_index_is_extended_in_the_cache(archive_dir):
    camera = archive_camera(archive_dir, ["2026-03-01_08-00-00.ts"], seconds=4.0)
    path = next(archive_dir.iterdir())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = frame_cache.counts.copy()
    half = frame_cache.index_for(camera, path)
    with path.open("ab") as out:
        out.write(data[len(data) // 2 :])
    whole = frame_cache.index_for(camera, path)
    assert frame_cache.counts - before == Counter(built=1, extended=1)
    assert len(half.video) < len(whole.video) == 100
    assert whole.to_bytes() == build_index(path).to_bytes()
    row = SegmentFrameIndex.objects.get(segment__camera=camera)
    assert (row.size, row.frames, bytes(row.data)) == (
        len(data),
        100 + len(whole.audio),
        whole.to_bytes(),
    )


@pytest.mark.django_db
def test_file_outside_the_archive_index_is_indexed_but_not_stored(archive_dir, tmp_path):
    camera = archive_camera(archive_dir, ["2026-03-01_08-00-00.mp4"])
    stray = segment(tmp_path, "stray.mp4", synth.SegmentSpec(**SMALL))
    assert len(frame_cache.index_for(camera, stray).video) == 50
    assert not SegmentFrameIndex.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_lost_database_connection_costs_the_cache_not_the_export(archive_dir):
    if connection.vendor != "postgresql":
        pytest.skip("cutting the connection needs PostgreSQL (set DATABASE_URL)")
    camera = archive_camera(archive_dir, ["2026-03-01_08-00-00.mp4"])
    path = next(archive_dir.iterdir())
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    before = frame_cache.counts.copy()
    index = frame_cache.index_for(camera, path)
    assert frame_cache.counts - before == Counter(uncached=1)
    assert index.to_bytes() == build_index(path).to_bytes()
    # The connection is usable again: the next lookup builds and stores the index.
    frame_cache.index_for(camera, path)
    assert SegmentFrameIndex.objects.filter(segment__camera=camera).count() == 1
