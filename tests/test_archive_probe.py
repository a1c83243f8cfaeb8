"""Probing a segment: header durations, cheap tail demux for MPEG-TS/Matroska, broken files."""

from datetime import UTC, datetime
from fractions import Fraction

import av
import pytest

from exports.media.probe import IncompleteFile, ProbeError, probe
from exports.media.synth import SegmentSpec, write_segment
from tests.media_helpers import NOT_A_RECORDING

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


def video_packets(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(video=0) if p.pts is not None)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("h264.mp4", SegmentSpec(width=160, height=120)),
        ("hevc.mp4", SegmentSpec(vcodec="hevc", width=160, height=120, acodec=None, bframes=2)),
        ("mjpeg.avi", SegmentSpec(vcodec="mjpeg", width=160, height=120, acodec="pcm_mulaw", sample_rate=8000)),
    ],
)
def test_mp4_and_avi_durations_come_from_the_header(tmp_path, name, spec):
    path = tmp_path / name
    write_segment(path, T0, 2.0, spec)
    result = probe(path)
    assert (result.method, result.packets_read) == ("header", 0)
    assert result.duration == pytest.approx(2.0, abs=0.001)
    assert (result.video_codec, result.width, result.height) == (spec.vcodec, 160, 120)
    assert result.audio_codec == (spec.acodec or "")


@pytest.mark.parametrize("name", ["long.ts", "long.mkv"])
def test_mpegts_and_matroska_read_only_the_tail(tmp_path, name):
    # B-frames: the last packet in the file is not the last frame shown.
    spec = SegmentSpec(width=160, height=120, fps=Fraction(10), bframes=2)
    path = tmp_path / name
    write_segment(path, T0, 12.0, spec, pts_origin=3600.0)
    result = probe(path)
    assert result.method == "tail"
    assert result.duration == pytest.approx(12.0, abs=0.001)  # audio runs longer: ignored
    assert result.packets_read < video_packets(path) / 2


def test_growing_files_report_what_is_written_so_far(tmp_path):
    spec = SegmentSpec(width=160, height=120, acodec=None)
    for name in ("grow.ts", "grow.mkv"):
        full = tmp_path / f"full-{name}"
        write_segment(full, T0, 4.0, spec)
        data = full.read_bytes()
        growing = tmp_path / name
        growing.write_bytes(data[: len(data) // 2 // 188 * 188])
        result = probe(growing)
        assert 0.5 < result.duration < 4.0


def test_creation_time_tag_is_read(tmp_path):
    path = tmp_path / "tagged.mkv"
    write_segment(path, T0, 1.0, SegmentSpec(width=160, height=120), creation_time=T0)
    assert probe(path).creation_time == T0
    untagged = tmp_path / "untagged.mp4"
    write_segment(untagged, T0, 1.0, SegmentSpec(width=160, height=120))
    assert probe(untagged).creation_time is None


def test_mp4_without_moov_is_incomplete_and_garbage_is_an_error(tmp_path):
    full = tmp_path / "full.mp4"
    write_segment(full, T0, 2.0, SegmentSpec(width=160, height=120))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size - 2000])
    with pytest.raises(IncompleteFile):
        probe(cut)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(NOT_A_RECORDING[:5000])
    with pytest.raises(ProbeError) as raised:
        probe(garbage)
    assert not isinstance(raised.value, IncompleteFile)
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    with pytest.raises(ProbeError):
        probe(empty)


def _remux_fragmented(source, target):
    """Copy a recording into fragmented MP4, as recorders that keep files readable write it."""
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4", options=options) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)


def _demuxed_video_seconds(path) -> float:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        spans = [(p.pts, p.pts + p.duration) for p in container.demux(video) if p.pts is not None]
    return float((max(e for _, e in spans) - min(s for s, _ in spans)) * video.time_base)


def test_fragmented_mp4_is_timed_from_its_fragments_also_while_growing(tmp_path):
    source = tmp_path / "plain.mp4"
    write_segment(source, T0, 4.0, SegmentSpec(width=160, height=120))
    fragmented = tmp_path / "fragmented.mp4"
    _remux_fragmented(source, fragmented)
    growing = tmp_path / "growing.mp4"
    growing.write_bytes(fragmented.read_bytes()[: fragmented.stat().st_size // 2])

    for path in (fragmented, growing):
        result = probe(path)
        assert result.method == "tail"
        assert result.duration == pytest.approx(_demuxed_video_seconds(path), abs=0.001)
    assert probe(growing).duration < probe(fragmented).duration
