"""Exports decoded back: exact first/last frames, no lost or repeated frame, audio in sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from exports.media import FORMATS, SourceSegment, engine, export, synth
from tests.media_helpers import beep_offsets, decode_with_pyav, frame_steps_ok

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
FRAME = timedelta(milliseconds=40)
SEGMENT_S = 3.0
CONTAINER_NAMES = {
    "mp4": "mov,mp4,m4a,3gp,3g2,mj2",
    "mov": "mov,mp4,m4a,3gp,3g2,mj2",
    "mkv": "matroska,webm",
    "avi": "avi",
    "asf": "asf",
    "flv": "flv",
}


def make_archive(folder: Path, spec: synth.SegmentSpec, count=3, suffix=".mp4", skip=()):
    """Consecutive segments starting at T0 (indexes in `skip` are left out: a gap)."""
    segments = []
    for index in range(count):
        start = T0 + timedelta(seconds=SEGMENT_S * index)
        if index in skip:
            continue
        path = folder / f"seg{index}{suffix}"
        synth.write_segment(path, start, SEGMENT_S, spec)
        segments.append(SourceSegment(path, start, start + timedelta(seconds=SEGMENT_S)))
    return segments


@pytest.fixture(scope="module")
def h264_archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("h264")
    return {
        bframes: make_archive(
            root / f"b{bframes}", synth.SegmentSpec(width=160, height=120, bframes=bframes)
        )
        for bframes in (0, 2)
    }


def check_export(decoded, first, last, result, fmt, gaps=(), audio=True, audio_frame_s=0.064):
    assert decoded.format_name == CONTAINER_NAMES[fmt]
    assert decoded.walls[0] == first
    assert decoded.walls[-1] == last
    assert frame_steps_ok(decoded.walls, FRAME, gaps) == []
    pairs = list(zip(decoded.times, decoded.times[1:], strict=False))
    if fmt == "asf":
        # FFmpeg's asf demuxer rebuilds pts from send times and can stamp the last two frames
        # alike; the frames themselves (checked above) are complete and in order.
        assert all(b >= a for a, b in pairs)
    else:
        assert all(b > a for a, b in pairs)
    assert len(decoded.walls) == result.frames
    assert result.first_frame == first and result.last_frame == last
    expected = result.frames * FRAME.total_seconds()
    assert result.duration_s == pytest.approx(expected, abs=0.001)
    span = decoded.times[-1] - decoded.times[0] + FRAME.total_seconds()
    # FFmpeg's asf demuxer reports every frame but the first one frame late (it does so for
    # files FFmpeg's own asf muxer writes too), so the span of an asf reads one frame long.
    assert span == pytest.approx(expected, abs=0.041 if fmt == "asf" else 0.002)
    if audio:
        assert decoded.audio is not None
        audio_len = len(decoded.audio) / decoded.sample_rate
        # AAC adds up to an audio frame of priming and one of padding.
        assert audio_len == pytest.approx(expected, abs=2 * audio_frame_s + 0.02)
        assert abs(decoded.audio_start - decoded.times[0]) < 0.5  # beeps pin it finer
        offsets = beep_offsets(decoded)
        whole_seconds = sum(1 for w in decoded.walls if w.microsecond == 0)
        assert len(offsets) >= whole_seconds - 1
        # Within one audio frame, plus half of one for beeps right at a join, where the first
        # copied AAC frame decodes without its predecessor's overlap and its onset blurs.
        assert all(abs(o) <= 1.5 * audio_frame_s for o in offsets), offsets


@pytest.mark.parametrize("bframes", [0, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_starts_on_requested_frame_not_keyframe(h264_archives, tmp_path, fmt, bframes):
    segments = h264_archives[bframes]
    start = T0 + timedelta(seconds=1.23)  # mid-GOP, inside the first segment
    end = T0 + timedelta(seconds=7.61)  # mid-GOP, in the third segment
    out = tmp_path / f"out.{fmt}"
    result = export(segments, start, end, fmt, out)
    decoded = decode_with_pyav(out)
    # On screen at 1.23 s is the frame recorded at 1.20 s; just before 7.61 s the one at 7.60 s.
    check_export(decoded, T0 + timedelta(seconds=1.2), T0 + timedelta(seconds=7.6), result, fmt)
    assert result.skipped == [] and result.gaps == []
    if fmt == "asf" and bframes:
        assert result.technique == "transcode"
        assert result.transcoded == [
            "video: h264 -> h264 (FFmpeg's asf keeps only decode times, so B-frames would play"
            " out of sync)"
        ]
    else:
        assert result.technique == "exact_cut" and result.transcoded == []
        assert 0 < result.reencoded_frames < result.frames / 2


def test_export_of_whole_segments_is_a_pure_stream_copy(h264_archives, tmp_path):
    segments = h264_archives[0]
    out = tmp_path / "out.mp4"
    result = export(segments, T0, T0 + timedelta(seconds=9), "mp4", out)
    decoded = decode_with_pyav(out)
    check_export(decoded, T0, T0 + timedelta(seconds=9) - FRAME, result, "mp4")
    assert result.technique == "stream_copy" and result.reencoded_frames == 0
    assert result.frames == 225


@pytest.mark.parametrize("fmt", ["mp4", "avi"])
def test_gap_in_recording_is_listed_and_not_filled(tmp_path, fmt):
    spec = synth.SegmentSpec(width=160, height=120)
    segments = make_archive(tmp_path / "arch", spec, count=3, skip={1})
    start, end = T0 + timedelta(seconds=2.5), T0 + timedelta(seconds=7.5)
    out = tmp_path / f"out.{fmt}"
    result = export(segments, start, end, fmt, out)
    gap = (T0 + timedelta(seconds=3), T0 + timedelta(seconds=6))
    assert result.gaps == [gap]
    decoded = decode_with_pyav(out)
    check_export(
        decoded, T0 + timedelta(seconds=2.48), T0 + timedelta(seconds=7.48), result, fmt, gaps=[gap]
    )
    # Back to back: 13 frames (2.48 .. 2.96) before the gap and 38 (6.00 .. 7.48) after it.
    assert result.frames == 51
    assert result.to_dict()["gaps"] == [[gap[0].isoformat(), gap[1].isoformat()]]


@pytest.mark.parametrize("fmt", ["avi", "mp4", "flv"])
def test_joins_keep_audio_timestamps_increasing_in_coarse_muxer_units(tmp_path, fmt):
    # AVI counts 48 kHz AAC in whole frames (1024/48000 s): rebased joins must not collide.
    spec = synth.SegmentSpec(width=160, height=120, sample_rate=48000)
    segments = make_archive(tmp_path / "arch", spec, count=4)
    out = tmp_path / f"out.{fmt}"
    result = export(segments, T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=11.5), fmt, out)
    decoded = decode_with_pyav(out)
    check_export(
        decoded,
        T0 + timedelta(seconds=0.48),
        T0 + timedelta(seconds=11.48),
        result,
        fmt,
        audio_frame_s=1024 / 48000,
    )


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
def test_long_export_path_indexes_on_disk_and_plans_again_writes_the_same_file(
    h264_archives, tmp_path, monkeypatch, fmt
):
    """Past HOLD_PACKETS the engine keeps indexes in a temporary file and plans each segment
    again when it writes it (memory flat for a day): forced from the first packet here, both
    writers give the file the in-memory path gives: to the byte (mp4) or packet for packet
    (mkv, whose header carries a random segment id)."""
    segments = h264_archives[2]
    start, end = T0 + timedelta(seconds=1.23), T0 + timedelta(seconds=7.61)
    held = export(segments, start, end, fmt, tmp_path / f"held.{fmt}")
    monkeypatch.setattr(engine, "HOLD_PACKETS", 0)
    shelved = export(segments, start, end, fmt, tmp_path / f"shelved.{fmt}")
    if fmt == "mp4":
        assert (tmp_path / f"shelved.{fmt}").read_bytes() == (tmp_path / f"held.{fmt}").read_bytes()
    assert packets(tmp_path / f"shelved.{fmt}") == packets(tmp_path / f"held.{fmt}")
    assert shelved.to_dict() == held.to_dict()
    assert shelved.technique == "exact_cut" and shelved.reencoded_frames > 0
    decoded = decode_with_pyav(tmp_path / f"shelved.{fmt}")
    check_export(decoded, T0 + timedelta(seconds=1.2), T0 + timedelta(seconds=7.6), shelved, fmt)


def packets(path: Path) -> list[tuple]:
    with av.open(str(path)) as container:
        return [
            (p.stream.index, p.pts, p.dts, p.is_keyframe, bytes(p))
            for p in container.demux()
            if p.size
        ]
