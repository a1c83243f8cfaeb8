"""The executor follows the plan and checks itself: supplied indexes, stale indexes, the direct
MP4/MOV writer's output, and the reasons given for re-encoded frames."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import av
import numpy as np
import pytest

from exports.media import ExportError, ahead, engine, export, synth
from exports.media.frameindex import build_index
from tests.media_helpers import decode_with_pyav
from tests.test_media_export import T0, make_archive

SMALL = {"width": 160, "height": 120}
START, END = T0 + timedelta(seconds=1.23), T0 + timedelta(seconds=7.61)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("exec"), synth.SegmentSpec(bframes=2, **SMALL))


def test_supplied_indexes_are_used_and_reasons_for_reencoding_are_listed(archive, tmp_path):
    asked = []

    def index_for(path):
        asked.append(path.name)
        return build_index(path)

    result = export(archive, START, END, "mkv", tmp_path / "o.mkv", index_for=index_for)
    # each once (the first and last first: their re-encoded spans are encoded ahead)
    assert sorted(asked) == ["seg0.mp4", "seg1.mp4", "seg2.mp4"]
    # The head of the first GOP is re-encoded; at the end the wanted frames are a decode-order
    # prefix of their GOP (B-frames after the cut come later in decode order): copied.
    assert result.reencoded == ["seg0.mp4: 20 frames (the range starts between keyframes)"]
    assert result.reencoded_frames == 20
    assert result.to_dict()["reencoded"] == result.reencoded
    assert len(decode_with_pyav(tmp_path / "o.mkv").walls) == result.frames


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
def test_an_index_that_no_longer_matches_its_file_fails_cleanly(archive, tmp_path, fmt):
    # The cache hands out another file's index (as after a file was replaced in place).
    stale = {s.path: build_index(archive[(i + 1) % 3].path) for i, s in enumerate(archive)}
    out_dir = tmp_path / "task"
    out_dir.mkdir()
    for step in stale.values():  # make the timestamps disagree with the files
        step.video.pts += 7
        step.video.dts += 7
    with pytest.raises(ExportError, match="changed since it was indexed|plan has"):
        export(archive, START, END, fmt, out_dir / f"o.{fmt}", index_for=stale.__getitem__)
    assert list(out_dir.iterdir()) == []


def top_level_boxes(data: bytes) -> list[bytes]:
    kinds, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kinds.append(data[pos + 4 : pos + 8])
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        pos += size
    return kinds


def test_mp4_copy_is_written_by_the_direct_writer_moov_first_with_an_edit_list(archive, tmp_path):
    out = tmp_path / "o.mp4"
    result = export(archive, T0 + timedelta(seconds=1), T0 + timedelta(seconds=8), "mp4", out)
    data = out.read_bytes()
    # (a `free` box may pad the mdat to the sources' block alignment)
    assert [k for k in top_level_boxes(data) if k != b"free"] == [b"ftyp", b"moov", b"mdat"]
    assert b"elst" in data and b"Lavf" not in data  # not FFmpeg's muxer
    assert result.technique == "stream_copy"
    assert len(decode_with_pyav(out).walls) == result.frames == 175


def test_hevc_smart_cut_into_mp4_says_hev1(tmp_path):
    segments = make_archive(tmp_path / "a", synth.SegmentSpec(vcodec="hevc", **SMALL), count=2)
    out = tmp_path / "o.mp4"
    result = export(segments, START, T0 + timedelta(seconds=5.5), "mp4", out)
    data = out.read_bytes()
    assert result.reencoded_frames > 0
    assert b"hev1" in data and b"hvc1" not in data
    decoded = decode_with_pyav(out)
    assert len(decoded.walls) == result.frames
    assert decoded.walls[0] == T0 + timedelta(seconds=1.2)


def gray_frames(path) -> list:
    """(presentation time, luma) of every frame."""
    with av.open(str(path)) as container:
        return [
            (frame.time, frame.to_ndarray(format="gray")) for frame in container.decode(video=0)
        ]


def taken_ahead(monkeypatch) -> list:
    """What the executor's look-ups of spans encoded ahead returned (None: not there)."""
    taken = []
    real = ahead.SpansAhead.take

    def take(self, key):
        packets = real(self, key)
        taken.append(None if packets is None else len(packets))
        return packets

    monkeypatch.setattr(ahead.SpansAhead, "take", take)
    return taken


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
def test_the_head_encoded_ahead_is_taken_and_decodes_as_if_encoded_in_turn(
    archive, tmp_path, monkeypatch, fmt
):
    taken = taken_ahead(monkeypatch)
    result = export(archive, START, END, fmt, tmp_path / f"ahead.{fmt}")
    assert taken == [result.reencoded_frames] == [20]
    # The same export with nothing encoded ahead: the executor encodes the span itself.
    monkeypatch.setattr(engine, "spans_ahead", lambda *args: ahead.SpansAhead())
    in_turn = export(archive, START, END, fmt, tmp_path / f"in_turn.{fmt}")
    assert taken == [20]  # nothing looked up: encoded in turn
    assert in_turn.to_dict() == {**result.to_dict(), "bytes": in_turn.bytes}
    frames, expected = (
        gray_frames(tmp_path / f"ahead.{fmt}"),
        gray_frames(tmp_path / f"in_turn.{fmt}"),
    )
    assert len(frames) == len(expected) == result.frames
    assert [t for t, _ in frames] == [t for t, _ in expected]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(frames, expected, strict=True))


def started_ahead(monkeypatch) -> list:
    """The SpansAhead each export started."""
    started = []
    real = engine.spans_ahead

    def spans_ahead(*args):
        started.append(real(*args))
        return started[-1]

    monkeypatch.setattr(engine, "spans_ahead", spans_ahead)
    return started


def test_a_span_the_full_plan_encodes_otherwise_is_encoded_by_the_executor(tmp_path, monkeypatch):
    """The middle segment's higher frame rate changes the encoder's rate (the output's
    fastest): what was encoded ahead from the first segment alone is not taken."""
    segments = make_archive(tmp_path / "a", synth.SegmentSpec(bframes=2, **SMALL))
    faster = synth.SegmentSpec(bframes=2, fps=Fraction(30), **SMALL)
    synth.write_segment(segments[1].path, segments[1].start, 3.0, faster)
    taken, started = taken_ahead(monkeypatch), started_ahead(monkeypatch)
    out = tmp_path / "o.mp4"
    result = export(segments, START, END, "mp4", out)
    (work,) = started
    assert len(work.jobs) == 1 and all(len(r) == 20 for r in work.results.values())
    assert taken == [] and result.reencoded_frames == 20
    assert len(decode_with_pyav(out).walls) == result.frames


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
def test_a_span_whose_work_ahead_failed_is_encoded_by_the_executor(
    archive, tmp_path, monkeypatch, fmt
):
    def fail(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ahead, "_encode", fail)
    taken = taken_ahead(monkeypatch)
    out = tmp_path / f"o.{fmt}"
    result = export(archive, START, END, fmt, out)
    assert taken == [None] and result.reencoded_frames == 20
    decoded = decode_with_pyav(out)
    assert len(decoded.walls) == result.frames
    assert decoded.walls[0] == result.first_frame
