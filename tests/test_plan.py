"""The planner on hand-built frame indexes: no file, no decoding.

Video time base 1/25 s and one tick per frame unless a test says otherwise, so a frame's pts is
its number; segments start at T0 + their first pts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from exports.media.errors import NoRecordingError
from exports.media.frameindex import Kind, SegmentIndex, StreamIndex, StreamInfo
from exports.media.plan import (
    Copy,
    PlanSegment,
    Reencode,
    SegmentSummary,
    make_plan,
    outline_plan,
)

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
TB = Fraction(1, 25)
I, O, R, L, LO, P = Kind.IDR, Kind.OPEN, Kind.RECOVERY, Kind.LEADING, Kind.LEADING_OK, Kind.INTER  # noqa: E741


def stream(frames, tb=TB, codec="h264", size=(160, 120), durations=None, recovery=None):
    """A video StreamIndex from (kind, pts) pairs in decode order."""
    kinds = np.array([k for k, _ in frames], dtype=np.uint8)
    pts = np.array([p for _, p in frames], dtype=np.int64)
    order = np.sort(pts)
    if durations is None:
        # Each frame lasts until the next one in presentation order (the last as its previous).
        steps = np.diff(order).tolist()
        following = dict(zip(order[:-1].tolist(), steps, strict=True))
        durations = [following.get(int(p), steps[-1] if steps else 1) for p in pts]
    dts = order - (int((order - pts).max()) if len(pts) else 0)
    info = StreamInfo(
        "video",
        codec,
        tb,
        b"",
        "annexb",
        0,
        size[0],
        size[1],
        "yuv420p",
        frame_rate=1 / (TB if tb == TB else tb),
    )
    n = len(frames)
    rec = np.zeros(n, dtype=np.int16)
    for j, count in (recovery or {}).items():
        rec[j] = count
    return StreamIndex(
        info,
        pts,
        dts,
        np.array(durations, dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        np.full(n, 100, dtype=np.int32),
        kinds,
        rec,
    )


def audio_stream(first_s, seconds, rate=16000, frame=1024):
    count = int(seconds * rate) // frame
    pts = np.arange(count, dtype=np.int64) * frame + round(first_s * rate)
    info = StreamInfo(
        "audio",
        "aac",
        Fraction(1, rate),
        b"\x14\x08",
        "",
        0,
        sample_rate=rate,
        channels=1,
        frame_size=frame,
    )
    n = len(pts)
    return StreamIndex(
        info,
        pts,
        pts.copy(),
        np.full(n, frame, dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        np.full(n, 10, dtype=np.int32),
        np.full(n, Kind.IDR, dtype=np.uint8),
        np.zeros(n, dtype=np.int16),
    )


def segment(video, name="seg.mp4", at=None, audio=None, damaged=""):
    wall = at if at is not None else T0 + timedelta(seconds=float(int(video.pts.min()) * TB))
    index = SegmentIndex(Path(name), 0, 0.0, "mov,mp4,m4a,3gp,3g2,mj2", video, audio, damaged)
    return PlanSegment(Path(name), wall, index)


def at(frames: float) -> datetime:
    """Wall time of frame number `frames` (may be fractional: a time between two frames)."""
    return T0 + timedelta(seconds=frames / 25)


def closed_gops(gops, size, first=0):
    """IDR + P frames, no reordering."""
    return [(I if j % size == 0 else P, first + j) for j in range(gops * size)]


def bframe_gops(gops, size, kind=I, first_kind=I):
    """GOPs of `size` frames with one B-frame between references: I0 P2 B1 P4 B3 ..."""
    frames = []
    for g in range(gops):
        base = g * size
        frames.append((first_kind if g == 0 else kind, base))
        for ref in range(base + 2, base + size, 2):
            frames.append((P, ref))
            frames.append((P, ref - 1))
        if size % 2 == 0:
            frames.append((P, base + size - 1))
    return frames


def open_gops(gops, size, open_kind=O, leading=L, leading_count=1):
    """An IDR, then open access points each decoded before their `leading_count` leading
    pictures, which are presented before them (they reference the previous GOP)."""
    frames = [(I, 0)] + [(P, j) for j in range(1, size - leading_count)]
    for g in range(1, gops):
        base = g * size
        frames.append((open_kind, base))
        frames += [(leading, base - leading_count + k) for k in range(leading_count)]
        frames += [(P, base + j) for j in range(1, size - leading_count if g < gops - 1 else size)]
    return frames


def kinds_of(plan):
    return [(type(s).__name__, s.segment) for s in plan.video_steps()]


def written_pts(plan):
    return np.concatenate([s.pts for s in plan.video_steps()])


def check_timing(plan):
    """Strictly increasing dts with dts <= pts, and every output pts distinct."""
    pts = written_pts(plan)
    dts = np.concatenate([s.dts for s in plan.video_steps()])
    assert np.all(np.diff(dts) > 0)
    assert np.all(dts <= pts)
    assert len(set(pts.tolist())) == len(pts) == plan.frames
    assert dts[0] == np.sort(pts)[0] - plan.delay


def source_frames(plan):
    """The source pts of every written frame, in presentation order (single segment)."""
    out = []
    for step in plan.video_steps():
        packets = step.packets if isinstance(step, Copy) else step.frames
        out += packets.tolist()
    return out


def test_closed_gop_mid_gop_start_reencodes_the_head_only():
    seg = segment(stream(closed_gops(3, 10)))
    plan = make_plan([seg], at(5), at(25), "mp4")
    head, run = plan.segments[0].video
    assert isinstance(head, Reencode) and head.frames.tolist() == [5, 6, 7, 8, 9]
    assert head.decode_from == 0 and head.warmup == 5
    assert head.reason == "the range starts between keyframes"
    # No reordering: the copy may end inside the last GOP.
    assert isinstance(run, Copy) and run.packets.tolist() == list(range(10, 25))
    assert plan.frames == 20 and plan.reencoded_frames == 5 and plan.technique == "exact_cut"
    assert plan.first_frame == at(5) and plan.last_frame == at(24)
    assert written_pts(plan).tolist() == [k * int(TB / plan.unit) for k in range(20)]
    assert plan.gaps == [] and plan.delay == 0
    check_timing(plan)


def test_keyframe_aligned_range_is_a_pure_copy():
    seg = segment(stream(bframe_gops(3, 10)))
    plan = make_plan([seg], at(10), at(30), "mkv")
    (run,) = plan.segments[0].video
    assert isinstance(run, Copy) and len(run.packets) == 20 and len(run.dropped) == 0
    assert plan.technique == "stream_copy" and plan.frames == 20
    check_timing(plan)


def test_reordered_gop_cut_at_the_end_is_reencoded_after_the_copy():
    seg = segment(stream(bframe_gops(3, 10)))
    # Frames 20..23 of the GOP at 20 are wanted; in decode order it runs I20 P22 B21 P24 B23:
    # P24 is not wanted, so B23 cannot be copied and is re-encoded after the copy.
    plan = make_plan([seg], at(10), at(24), "mp4")
    run, tail = plan.segments[0].video
    copied = sorted(seg.index.video.pts[run.packets].tolist())
    encoded = seg.index.video.pts[tail.frames].tolist()
    # Everything copied is presented before everything re-encoded after it.
    assert max(copied) < min(encoded)
    assert sorted(copied + encoded) == list(range(10, 24)) and encoded == [23]
    assert tail.reason == "the range ends inside a GOP with reordered frames"
    assert tail.decode_from == 20
    assert plan.delay > 0  # B-frames: one delay for the file
    check_timing(plan)


def test_open_gop_leading_pictures_are_reencoded_from_the_previous_gop():
    seg = segment(stream(open_gops(3, 10, leading_count=2), codec="hevc"))
    plan = make_plan([seg], at(3), at(30), "mp4")
    head, run = plan.segments[0].video
    video = seg.index.video
    # Frames 3..9 (8 and 9 are the leading pictures of the open point at 10) re-encoded,
    # decoded from the IDR: the leading pictures need the GOP before them.
    assert video.pts[head.frames].tolist() == list(range(3, 10))
    assert head.decode_from == 0
    assert "leading pictures" in head.reason
    assert video.kind[run.packets[0]] == O
    assert video.pts[run.dropped].tolist() == [8, 9]  # left out of the copy: re-encoded
    assert sorted(video.pts[run.packets].tolist()) == list(range(10, 30))
    assert plan.frames == 27
    check_timing(plan)


def test_h264_open_gop_copy_after_reencoded_frames_starts_only_at_an_idr():
    # FFmpeg orders an H.264 open-GOP I-frame's pictures after the frames before it: a copy
    # following re-encoded frames must start at an IDR (here the next segment's first frame).
    a = segment(stream(open_gops(3, 10, leading_count=2)), name="a.mp4")
    b = segment(stream(open_gops(2, 10, leading_count=2)), name="b.mp4", at=at(30))
    plan = make_plan([a, b], at(3), at(50), "mp4")
    (span,) = plan.segments[0].video
    assert isinstance(span, Reencode) and len(span.frames) == 27
    assert span.reason == "no IDR or I-frame after the cut in the rest of the segment"
    (run,) = plan.segments[1].video
    assert isinstance(run, Copy) and len(run.packets) == 20
    check_timing(plan)


def test_open_gop_keyframe_aligned_range_drops_the_leading_pictures_before_it():
    seg = segment(stream(open_gops(3, 10, leading_count=2)))
    plan = make_plan([seg], at(10), at(30), "mov")
    (run,) = plan.segments[0].video
    assert seg.index.video.pts[run.dropped].tolist() == [8, 9]
    assert plan.frames == 20 and plan.technique == "stream_copy"
    check_timing(plan)


def test_hevc_cra_with_rasl_at_the_start_of_a_file_is_left_out_and_listed():
    # A file that starts with a CRA whose RASL pictures reference the previous file.
    frames = (
        [(O, 2), (L, 0), (L, 1)]
        + [(P, j) for j in range(3, 12)]
        + [(O, 14), (L, 12), (L, 13), (P, 15)]
    )
    seg = segment(stream(frames, codec="hevc"), name="cra.mp4")
    plan = make_plan([seg], at(0), at(16), "mp4")
    assert plan.skipped == [
        "cra.mp4: 2 leading pictures of an open GOP whose references precede the file are not"
        " decodable and were left out"
    ]
    (run,) = plan.segments[0].video
    # The second CRA's RASL pictures decode fine inside the copy: only the first two are gone.
    assert sorted(seg.index.video.pts[run.packets].tolist()) == list(range(2, 16))
    assert plan.first_frame == at(2)
    assert plan.gaps[0].start == at(0) and plan.gaps[0].end == at(2)
    assert "not decodable" in plan.gaps[0].reason
    check_timing(plan)


def test_hevc_cra_mid_gop_cut_warms_the_decoder_from_the_previous_access_point():
    seg = segment(stream(open_gops(3, 8, leading_count=3), codec="hevc"))
    plan = make_plan([seg], at(12), at(20), "mkv")
    head, run = plan.segments[0].video
    video = seg.index.video
    assert video.pts[head.frames].tolist() == list(range(12, 16))
    assert head.decode_from == [j for j, k in enumerate(video.kind) if k == O][0]
    assert head.warmup > 0
    assert video.pts[run.dropped].tolist() == [13, 14, 15]
    check_timing(plan)


def test_intra_refresh_cut_after_the_only_idr_is_reencoded_from_a_recovered_point():
    # IDR at 0, then recovery-point SEI every 10 frames with a 9-frame refresh.
    frames = [(I, 0)] + [(R if j % 10 == 0 else P, j) for j in range(1, 40)]
    seg = segment(stream(frames, recovery={10: 9, 20: 9, 30: 9}))
    plan = make_plan([seg], at(25), at(40), "mp4")
    (span,) = plan.segments[0].video
    assert isinstance(span, Reencode)
    assert span.reason == "no IDR or I-frame after the cut in the rest of the segment"
    # Frame 25 is only 5 frames into the refresh starting at 20: decode from 10 (complete by 19).
    assert span.decode_from == 10 and span.frames.tolist() == list(range(25, 40))
    check_timing(plan)


def test_intra_refresh_file_without_idr_drops_frames_before_the_first_recovery():
    frames = [(R if j % 10 == 0 else P, j) for j in range(30)]
    seg = segment(stream(frames, recovery={0: 5, 10: 5, 20: 5}), name="ir.ts")
    plan = make_plan([seg], at(0), at(30), "mkv")
    assert plan.skipped == [
        "ir.ts: 5 frames whose references are missing are not decodable and were left out"
    ]
    assert plan.first_frame == at(5) and plan.frames == 25


def test_range_inside_one_long_gop_is_one_reencoded_span():
    seg = segment(stream(closed_gops(2, 250)))
    plan = make_plan([seg], at(75), at(125), "mp4")
    (span,) = plan.segments[0].video
    assert span.reason == "the range lies inside one GOP"
    assert span.decode_from == 0 and span.warmup == 75 and len(span.frames) == 50
    assert plan.reencoded_frames == 50


def test_intra_only_stream_is_copied_frame_exactly():
    seg = segment(stream([(I, j) for j in range(50)], codec="mjpeg"))
    plan = make_plan([seg], at(7.5), at(20.5), "avi")
    (run,) = plan.segments[0].video
    assert run.packets.tolist() == list(range(7, 21)) and plan.technique == "stream_copy"


def test_variable_frame_rate_keeps_its_spacing_and_lists_no_gap():
    # 25 fps for 10 frames, then 5 fps (one frame every 5 ticks), then 25 fps again.
    pts = list(range(10)) + list(range(10, 60, 5)) + list(range(60, 70))
    seg = segment(stream([(I if p % 30 == 0 else P, p) for p in pts]))
    plan = make_plan([seg], at(0), at(70), "mp4")
    scale = int(TB / plan.unit)
    assert written_pts(plan).tolist() == [p * scale for p in pts]
    assert plan.gaps == [] and plan.frames == len(pts)
    assert plan.duration == 70 * scale


def test_gap_between_segments_is_listed_and_parts_play_back_to_back():
    a = segment(stream(closed_gops(3, 25)), name="a.mp4")
    b = segment(stream(closed_gops(3, 25, first=150)), name="b.mp4")
    plan = make_plan([a, b], at(50), at(200), "mp4")
    assert [(g.start, g.end, g.reason) for g in plan.gaps] == [(at(75), at(150), "not recorded")]
    second = plan.segments[1]
    assert second.out_start == plan.segments[0].out_end  # back to back
    assert plan.frames == 25 + 50
    check_timing(plan)


def test_overlapping_segments_show_each_instant_once():
    a = segment(stream(closed_gops(3, 25)), name="a.mp4")  # frames 0..74
    b = segment(stream(closed_gops(3, 25, first=50)), name="b.mp4")  # frames 50..124
    plan = make_plan([a, b], at(0), at(125), "mp4")
    first, second = plan.segments
    assert first.last_frame == at(74) and second.first_frame == at(75)
    assert plan.frames == 125 and plan.gaps == []
    # b resumes at its own keyframe (its 26th frame): copied from there.
    (run,) = second.video
    assert isinstance(run, Copy) and run.packets[0] == 25
    check_timing(plan)


def test_frame_rate_change_between_segments_keeps_each_segments_spacing():
    a = segment(stream(closed_gops(2, 25)), name="a.mp4")  # 25 fps, frames 0..49
    # 12.5 fps from 2 s: a frame every 2 ticks.
    b_frames = [(I if j % 25 == 0 else P, 50 + 2 * j) for j in range(25)]
    b = segment(stream(b_frames), name="b.mp4")
    plan = make_plan([a, b], at(0), at(100), "avi")
    scale = int(TB / plan.unit)
    pts = written_pts(plan)
    assert pts.tolist() == [j * scale for j in range(50)] + [
        (50 + 2 * j) * scale for j in range(25)
    ]
    assert plan.gaps == [] and plan.technique == "stream_copy"


def test_time_unit_is_exact_for_every_time_base():
    v1 = stream([(I, 0)] + [(P, 512 * j) for j in range(1, 25)], tb=Fraction(1, 12800))
    v2 = stream([(I, 90000)] + [(P, 90000 + 3600 * j) for j in range(1, 25)], tb=Fraction(1, 90000))
    a = segment(v1, name="a.mp4", audio=audio_stream(0, 1.0))
    b = segment(v2, name="b.ts", at=T0 + timedelta(seconds=1))
    plan = make_plan([a, b], T0, T0 + timedelta(seconds=2), "mkv")
    assert plan.unit == Fraction(1, 2_880_000)  # lcm(12800, 90000, 16000)
    assert plan.segments[1].out_start == 2_880_000
    check_timing(plan)


def test_audio_is_cut_to_the_kept_video_and_stays_contiguous_across_joins():
    a = segment(stream(closed_gops(3, 25)), name="a.mp4", audio=audio_stream(0, 3.0))
    b = segment(stream(closed_gops(3, 25, first=75)), name="b.mp4", audio=audio_stream(3.0, 3.0))
    plan = make_plan([a, b], at(12.5), at(137.5), "mp4")
    frame = int(Fraction(1024, 16000) / plan.unit)
    runs = [s.audio for s in plan.segments]
    window = runs[0].window
    assert window == (12 * int(TB / plan.unit), 75 * int(TB / plan.unit))
    pts = np.concatenate([r.pts for r in runs])
    assert np.all(np.diff(pts) == frame)  # contiguous, no hole or overlap at the join
    assert pts[0] >= -frame // 2
    seconds = float(pts[-1] + frame - pts[0]) * float(plan.unit)
    assert seconds == pytest.approx(float(plan.duration * plan.unit), abs=2 * 0.064)


def test_codec_or_resolution_change_transcodes_every_frame():
    a = segment(stream(closed_gops(2, 25)), name="a.mp4")
    b = segment(stream(closed_gops(2, 25, first=50), size=(320, 240)), name="b.mp4")
    plan = make_plan([a, b], at(10), at(90), "mp4")
    assert plan.video_mode == "transcode" and plan.technique == "transcode"
    assert "resolution" in plan.transcoded[0]
    assert all(isinstance(s, Reencode) for s in plan.video_steps())
    assert plan.segments[0].video[0].decode_from == 0 and plan.frames == 80
    assert plan.reencoded_frames == 0  # a transcode, not a smart cut


@pytest.mark.parametrize(
    ("codec", "fmt", "bframes", "mode"),
    [
        ("h264", "asf", True, "transcode"),
        ("h264", "asf", False, "copy"),
        ("hevc", "avi", False, "transcode"),
        ("hevc", "mkv", True, "copy"),
        ("mpeg4", "mp4", False, "transcode"),
    ],
)
def test_copy_or_transcode_follows_the_compat_table(codec, fmt, bframes, mode):
    frames = bframe_gops(2, 10) if bframes else closed_gops(2, 10)
    plan = make_plan([segment(stream(frames, codec=codec))], at(0), at(20), fmt)
    assert plan.video_mode == mode


def test_damaged_and_videoless_segments_are_listed():
    a = segment(stream(closed_gops(2, 25)), name="a.ts", damaged="invalid data at 12345")
    empty = SegmentIndex(Path("b.mp4"), 0, 0.0, "mp4", None, audio_stream(2, 1))
    b = PlanSegment(Path("b.mp4"), at(50), empty)
    plan = make_plan([a, b], at(0), at(75), "mkv")
    assert plan.skipped == [
        "a.ts: truncated, read up to the damage (invalid data at 12345)",
        "b.mp4: no video stream",
    ]
    assert [(g.start, g.end) for g in plan.gaps] == [(at(50), at(75))]


def test_nothing_in_range_raises():
    seg = segment(stream(closed_gops(1, 25)))
    with pytest.raises(NoRecordingError):
        make_plan([seg], at(100), at(200), "mp4")


def test_overlapping_segments_audio_is_not_written_twice():
    # Audio recorded a little past each file's video, as recorders do.
    a = segment(stream(closed_gops(3, 25)), name="a.mp4", audio=audio_stream(0, 3.2))
    b = segment(stream(closed_gops(3, 25, first=50)), name="b.mp4", audio=audio_stream(2.0, 3.2))
    plan = make_plan([a, b], at(0), at(125), "mkv")
    frame = int(Fraction(1024, 16000) / plan.unit)
    pts = np.concatenate([s.audio.pts for s in plan.segments])
    assert np.all(np.diff(pts) == frame)  # b's audio of 2..3 s is not played again
    second = plan.segments[1].audio
    source_start = int(b.index.audio.pts[second.packets[0]]) * int(Fraction(1, 16000) / plan.unit)
    assert (
        abs(source_start + second.offset - int(pts[len(plan.segments[0].audio.pts)])) <= frame // 2
    )


def test_an_outline_plan_gives_each_segment_the_same_plan_again_one_at_a_time():
    """What the engine does for long exports: keep outlines only, plan each segment again when
    it is written. Mid-GOP cuts at both ends, B-frames (a dts delay), audio across the join."""
    a = segment(stream(bframe_gops(3, 10)), name="a.mp4", audio=audio_stream(0, 1.2))
    b = segment(
        stream(bframe_gops(3, 10), durations=[1] * 30),
        name="b.mp4",
        at=at(30),
        audio=audio_stream(1.2, 1.2),
    )
    segments = [a, b]
    whole = make_plan(segments, at(3), at(56), "mp4")
    loads = []

    def load(number):
        loads.append(number)
        return segments[number]

    class Loader:
        __getitem__ = staticmethod(load)

    summaries = [SegmentSummary.of(s) for s in segments]
    outline = outline_plan(summaries, Loader(), at(3), at(56), "mp4")
    assert outline.segments == [] and outline.delay == whole.delay > 0
    assert [o.steps for o in outline.outlines] == [o.steps for o in whole.outlines]
    assert (outline.frames, outline.duration, outline.gaps, outline.reencoded_frames) == (
        whole.frames,
        whole.duration,
        whole.gaps,
        whole.reencoded_frames,
    )
    loads.clear()
    again = list(outline.segment_plans(Loader()))
    assert loads == [0, 1]  # one segment's index at a time, in order
    assert len(again) == len(whole.segments) == 2
    for mine, theirs in zip(again, whole.segments, strict=True):
        for step, expected in zip(mine.video, theirs.video, strict=True):
            assert type(step) is type(expected) and step.position == expected.position
            assert np.array_equal(step.pts, expected.pts)
            assert np.array_equal(step.dts, expected.dts)
        assert np.array_equal(mine.audio.packets, theirs.audio.packets)
        assert np.array_equal(mine.audio.pts, theirs.audio.pts)
