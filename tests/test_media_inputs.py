"""Every recorder input kind exports exactly: HEVC, MJPEG, MPEG-TS, PCM and G.711 audio, no
audio; plus damaged segments, cancellation and progress. (A real 33-bit MPEG-TS wrap, and the
other streams cameras send, are in test_media_streams.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from exports.media import ExportCancelled, NoRecordingError, SourceSegment, export, synth
from tests.media_helpers import decode_with_pyav, frame_steps_ok
from tests.test_media_export import FRAME, T0, check_export, make_archive

START = T0 + timedelta(seconds=1.23)
END = T0 + timedelta(seconds=7.61)
FIRST = T0 + timedelta(seconds=1.2)
LAST = T0 + timedelta(seconds=7.6)
SMALL = {"width": 160, "height": 120}

INPUTS = {
    "hevc_mp4": (synth.SegmentSpec(vcodec="hevc", **SMALL), ".mp4"),
    "mjpeg_avi_alaw": (
        synth.SegmentSpec(vcodec="mjpeg", acodec="pcm_alaw", sample_rate=8000, **SMALL), ".avi"
    ),
    "h264_mkv_pcm": (synth.SegmentSpec(acodec="pcm_s16le", **SMALL), ".mkv"),
    "h264_avi_mulaw": (synth.SegmentSpec(acodec="pcm_mulaw", sample_rate=8000, **SMALL), ".avi"),
    "h264_ts_bframes": (synth.SegmentSpec(bframes=2, **SMALL), ".ts"),
    "h264_mp4_silent": (synth.SegmentSpec(acodec=None, **SMALL), ".mp4"),
}


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    return {
        name: make_archive(root / name, spec, suffix=suffix)
        for name, (spec, suffix) in INPUTS.items()
    }


def audio_frame_s(spec):
    return 1024 / spec.sample_rate


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["mp4", "avi", "flv", "mov", "asf", "mkv"])
@pytest.mark.parametrize("kind", list(INPUTS))
def test_each_input_kind_exports_exactly(archives, tmp_path, kind, fmt):
    spec = INPUTS[kind][0]
    out = tmp_path / f"out.{fmt}"
    result = export(archives[kind], START, END, fmt, out)
    decoded = decode_with_pyav(out)
    check_export(decoded, FIRST, LAST, result, fmt, audio=spec.acodec is not None,
                 audio_frame_s=audio_frame_s(spec))
    assert result.skipped == [] and result.gaps == []
    if spec.acodec is None:
        assert decoded.audio is None
    if fmt == "mp4":
        # MJPEG and HEVC are copied (FFmpeg and GStreamer play them from mp4); audio is AAC.
        assert decoded.video_codec == kind.split("_")[0]
        assert decoded.audio_codec in (None, "aac")


def test_truncated_segment_is_skipped_and_reported(tmp_path):
    spec = synth.SegmentSpec(**SMALL)
    segments = make_archive(tmp_path / "arch", spec)
    damaged = segments[1].path
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # no moov
    out = tmp_path / "out.mp4"
    result = export(segments, START, END, "mp4", out)
    assert len(result.skipped) == 1 and damaged.name in result.skipped[0]
    gap = (T0 + timedelta(seconds=3), T0 + timedelta(seconds=6))
    assert result.gaps == [gap]
    check_export(decode_with_pyav(out), FIRST, LAST, result, "mp4", gaps=[gap])


def test_truncated_mpegts_segment_is_used_up_to_the_damage(tmp_path):
    spec = synth.SegmentSpec(**SMALL)
    segments = make_archive(tmp_path / "arch", spec, suffix=".ts")
    damaged = segments[2].path
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2] + b"\xff" * 5000)
    out = tmp_path / "out.mkv"
    result = export(segments, START, END, "mkv", out)
    decoded = decode_with_pyav(out)
    assert decoded.walls[0] == FIRST
    assert T0 + timedelta(seconds=6.5) < decoded.walls[-1] < LAST
    assert result.last_frame == decoded.walls[-1]
    assert result.gaps and result.gaps[-1][1] == END


def test_garbage_segment_is_skipped_and_the_rest_exported(tmp_path):
    spec = synth.SegmentSpec(**SMALL)
    segments = make_archive(tmp_path / "arch", spec)
    segments[0].path.write_bytes(b"\x00garbage" * 1000)
    result = export(segments, START, END, "avi", tmp_path / "out.avi")
    assert "seg0.mp4" in result.skipped[0]
    assert result.first_frame == T0 + timedelta(seconds=3)


def test_nothing_recorded_raises_and_leaves_no_file(tmp_path):
    spec = synth.SegmentSpec(**SMALL)
    segments = make_archive(tmp_path / "arch", spec, count=1)
    out_dir = tmp_path / "task"
    out_dir.mkdir()
    with pytest.raises(NoRecordingError):
        export(segments, T0 + timedelta(hours=1), T0 + timedelta(hours=2), "mp4", out_dir / "x.mp4")
    segments[0].path.write_bytes(b"junk")
    with pytest.raises(NoRecordingError):
        export(segments, T0, T0 + timedelta(seconds=2), "mp4", out_dir / "x.mp4")
    assert list(out_dir.iterdir()) == []


def test_cancel_mid_way_stops_and_leaves_no_file(tmp_path):
    segments = make_archive(tmp_path / "arch", synth.SegmentSpec(**SMALL))
    out_dir = tmp_path / "task"
    out_dir.mkdir()
    polls = []

    def cancelled():
        # Cancel as soon as the temporary file holds something: mid-way through the export.
        polls.append(1)
        return any(out_dir.iterdir())

    with pytest.raises(ExportCancelled):
        export(segments, START, END, "mp4", out_dir / "x.mp4", cancelled=cancelled)
    assert len(polls) >= 2
    assert list(out_dir.iterdir()) == []


def test_progress_never_goes_backwards_and_ends_at_one(archives, tmp_path):
    seen = []
    export(archives["hevc_mp4"], T0, T0 + timedelta(seconds=9), "mkv", tmp_path / "o.mkv",
           progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 2


def test_resolution_change_between_segments_is_transcoded(tmp_path):
    segments = make_archive(tmp_path / "a", synth.SegmentSpec(**SMALL), count=2)
    later = make_archive(tmp_path / "b", synth.SegmentSpec(width=320, height=240), count=3)
    result = export(segments + later[2:], START, END, "mp4", tmp_path / "o.mp4")
    assert result.technique == "transcode"
    assert "resolution" in result.transcoded[0]
    decoded = decode_with_pyav(tmp_path / "o.mp4")
    check_export(decoded, FIRST, LAST, result, "mp4")


def test_segment_starting_between_keyframes_exports_from_its_first_keyframe(tmp_path):
    import av

    segments = make_archive(tmp_path / "arch", synth.SegmentSpec(**SMALL), count=2)
    # Rewrite the second segment without its first 10 frames, as a recorder that starts a
    # file mid-GOP would: those frames cannot be decoded and must be left out, not garbled.
    source = segments[1].path
    cut = source.with_name("cut.mp4")
    with av.open(str(source)) as src, av.open(str(cut), "w", format="mp4") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for index, packet in enumerate(p for p in src.demux(src.streams.video[0]) if p.size):
            if index >= 10:
                packet.stream = out
                dst.mux(packet)
    start = segments[1].start + 10 * FRAME
    segments[1] = SourceSegment(cut, start, segments[1].end)
    out_path = tmp_path / "out.mkv"
    result = export(segments, START, T0 + timedelta(seconds=5.5), "mkv", out_path)
    decoded = decode_with_pyav(out_path)
    assert "cut.mp4: 15 frames before its first keyframe" in result.skipped[0]
    # Frames 3.00 .. 3.96 of the second segment are gone; it resumes at its keyframe (4 s).
    gap = (T0 + timedelta(seconds=3), T0 + timedelta(seconds=4))
    assert result.gaps == [gap]
    assert decoded.walls[0] == FIRST and decoded.walls[-1] == T0 + timedelta(seconds=5.48)
    assert frame_steps_ok(decoded.walls, FRAME, [gap]) == []
