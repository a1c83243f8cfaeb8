"""The streams real cameras send, exported into all six containers and decoded back (issue 9).

Each stream kind is recorded once per module (exports/media/synth.py writes it; the first tests
check that it really is what it claims: NAL unit types, timestamps). Then every kind is cut
mid-GOP and on keyframes, across its segment joins, into mp4, mov, mkv, avi, flv and asf, and
each output is decoded once by FFmpeg (PyAV) and once by GStreamer: both must show exactly the
recorded instants the range asks for (first, last, every one between, each once), with output
timestamps following the recording and the result's lists telling the truth.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from exports.media import FORMATS, SourceSegment, compat, export, nal, synth
from tests.media_helpers import (
    beep_offsets,
    decode_with_gstreamer,
    decode_with_pyav,
    gstreamer_gray_frames,
    require_gstreamer_for,
    run_gst_launch,
)
from tests.test_media_export import CONTAINER_NAMES

T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)
W, H = 160, 120
SMALL = {"width": W, "height": H}
SEG = 3.0
TS_WRAP_TICKS = 1 << 33
WRAP_INTO_SEGMENT_S = 1.5  # the ts_wrap kind's timestamps wrap this far into its second file


@dataclass(frozen=True)
class Piece:
    """One file a recorder writes: when (seconds after T0), how long, how, and as what."""

    at: float
    seconds: float
    spec: synth.SegmentSpec
    suffix: str = ".mp4"
    pts_origin: float = 0.0
    muxer_options: dict = field(default_factory=dict)


def _wrapping_ts(count: int) -> list[Piece]:
    """MPEG-TS files with continuing raw timestamps that wrap inside the second file."""
    spec = synth.SegmentSpec(bframes=2, **SMALL)
    origin = synth.ts_origin_wrapping_after(SEG + WRAP_INTO_SEGMENT_S)
    return [
        Piece(SEG * i, SEG, spec, ".ts", origin + SEG * i, synth.RAW_TS_TIMESTAMPS)
        for i in range(count)
    ]


def _same(spec: synth.SegmentSpec, count: int = 3, seconds: float = SEG, suffix=".mp4"):
    return [Piece(seconds * i, seconds, spec, suffix) for i in range(count)]


OPEN_GOP_H264 = synth.SegmentSpec(bframes=3, gop=24, open_gop=True, **SMALL)
KINDS: dict[str, list[Piece]] = {
    # The recorder was down from 6 s to 9 s: a gap to report, not to fill.
    "h264_open_gop": [Piece(at, SEG, OPEN_GOP_H264) for at in (0, SEG, 3 * SEG)],
    "hevc_cra_rasl": _same(
        synth.SegmentSpec(vcodec="hevc", bframes=3, gop=24, open_gop=True, **SMALL)
    ),
    "h264_intra_refresh": _same(synth.SegmentSpec(intra_refresh=True, acodec=None, **SMALL)),
    "h264_vfr": _same(synth.SegmentSpec(rate_drops=((0.8, 2.2),), **SMALL)),
    "h264_full_range": _same(synth.SegmentSpec(full_range=True, bframes=2, **SMALL)),
    # 25 fps, then a file at 15 fps, then 25 fps again.
    "fps_change": [
        Piece(SEG * i, SEG, synth.SegmentSpec(fps=Fraction(rate), **SMALL))
        for i, rate in enumerate((25, 15, 25))
    ],
    "resolution_change": _same(synth.SegmentSpec(acodec=None, **SMALL), 2)
    + [Piece(2 * SEG, SEG, synth.SegmentSpec(acodec=None, width=2 * W, height=2 * H))],
    # A recorder restarting: the second file starts 2 s before the first one ends.
    "overlap": [Piece(0, 4, synth.SegmentSpec(**SMALL)), Piece(2, 4, synth.SegmentSpec(**SMALL))],
    "ts_wrap": _wrapping_ts(3),
    "long_gop": _same(synth.SegmentSpec(gop=250, bframes=2, acodec=None, **SMALL), 2, 12.0),
    "h264_intra_only": _same(synth.SegmentSpec(gop=1, acodec=None, **SMALL)),
    "mjpeg_intra_only": _same(
        synth.SegmentSpec(vcodec="mjpeg", acodec="pcm_mulaw", sample_rate=8000, **SMALL),
        suffix=".avi",
    ),
}
CUTS = ("mid_gop", "keyframes")


@dataclass
class Recording:
    """An archive of one stream kind and what its files hold, frame by frame."""

    pieces: list[Piece]
    segments: list[SourceSegment]
    frames: list[list[tuple[datetime, Fraction]]]  # per segment: (shot at, lasts) per frame
    keyframes: list[list[datetime]]  # per segment: where decoding may start (or recover)

    @property
    def video(self) -> str:
        return self.pieces[0].spec.vcodec

    @property
    def audio(self) -> str | None:
        return self.pieces[0].spec.acodec

    def cut(self, name: str) -> tuple[datetime, datetime]:
        """`mid_gop`: both ends between keyframes; `keyframes`: both ends on keyframes.

        Either way the range starts in the first file and ends in the last, across every join.
        """
        first, last = self.segments[0], self.segments[-1]
        if name == "mid_gop":
            return first.start + timedelta(seconds=1.23), last.end - timedelta(seconds=1.39)
        start = min(k for k in self.keyframes[0] if k >= first.start + timedelta(seconds=0.5))
        end = max(k for k in self.keyframes[-1] if k < last.end - timedelta(seconds=0.5))
        return start, end

    def kept(self, start: datetime, end: datetime) -> list[tuple[datetime, Fraction]]:
        """The recorded frames an export of [start, end) shows: (shot at, lasts) each.

        A frame is in the range when it is on screen at some instant of it; where files
        overlap in wall time, a later file resumes after the earlier one's last kept frame.
        """
        kept: list[tuple[datetime, Fraction]] = []
        for frames in self.frames:
            for shot, lasts in frames:
                if shot >= end or shot + timedelta(seconds=float(lasts)) <= start:
                    continue
                if kept and shot <= kept[-1][0]:
                    continue
                kept.append((shot, lasts))
        return kept

    def expected(self, start: datetime, end: datetime) -> list[tuple[datetime, Fraction]]:
        """What the export's frames show: (bar code time, duration) each."""
        return [(synth.shown_time(shot), lasts) for shot, lasts in self.kept(start, end)]

    def gaps(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Where nothing was recorded between two kept frames (the range starts and ends on
        recorded footage in these tests)."""
        kept = self.kept(start, end)
        ends = [
            (shot + timedelta(seconds=float(lasts)), later)
            for (shot, lasts), (later, _) in zip(kept, kept[1:], strict=False)
        ]
        return [(a, b) for a, b in ends if b > a]


def record(folder: Path, pieces: list[Piece]) -> Recording:
    segments, frames, keyframes = [], [], []
    for index, piece in enumerate(pieces):
        start = T0 + timedelta(seconds=piece.at)
        path = folder / f"seg{index}{piece.suffix}"
        synth.write_segment(
            path,
            start,
            piece.seconds,
            piece.spec,
            pts_origin=piece.pts_origin,
            muxer_options=piece.muxer_options,
        )
        offsets = synth.frame_offsets(piece.spec, piece.seconds)
        lasts = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
        lasts.append(piece.spec.frame_duration)
        shots = [start + timedelta(seconds=float(o)) for o in offsets]
        frames.append(list(zip(shots, lasts, strict=True)))
        every = 1 if piece.spec.vcodec == "mjpeg" else piece.spec.keyframe_interval
        keyframes.append(shots[::every])
        end = shots[-1] + timedelta(seconds=float(lasts[-1]))
        segments.append(SourceSegment(path, start, end))
    return Recording(pieces, segments, frames, keyframes)


class _Lazy(dict):
    """A dict that makes each value on first use, so a single selected test builds only what
    it needs; a failure is remembered and raised again rather than redone."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, key):
        try:
            value = self._make(key)
        except Exception as error:  # remembered, raised again on every use
            value = error
        self[key] = value
        return value

    def get_or_raise(self, key):
        value = self[key]
        if isinstance(value, Exception):
            raise value
        return value


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("streams")
    return _Lazy(lambda kind: record(root / kind, KINDS[kind]))


@pytest.fixture(scope="module")
def exports(recordings, tmp_path_factory):
    """(kind, cut, fmt) -> (output path, ExportResult), each exported once per module."""
    root = tmp_path_factory.mktemp("exports")

    def make(key):
        kind, cut, fmt = key
        rec = recordings.get_or_raise(kind)
        out = root / f"{kind}-{cut}.{fmt}"
        return out, export(rec.segments, *rec.cut(cut), fmt, out)

    return _Lazy(make)


# -- the generators make what they claim --------------------------------------------------------


def packet_nals(data: bytes, annexb: bool) -> list[bytes]:
    """NAL units of one packet: Annex B (MPEG-TS) or 4-byte length-prefixed (MP4)."""
    if annexb:
        return nal.split_annexb(data)
    units, pos = [], 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        units.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return units


class _Bits:
    """Exp-Golomb reader over a NAL unit's payload (emulation prevention bytes removed)."""

    def __init__(self, payload: bytes):
        self.data = payload.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos // 8]
        self.pos += 1
        return (byte >> (7 - (self.pos - 1) % 8)) & 1

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        value = 1
        for _ in range(zeros):
            value = value << 1 | self.bit()
        return value - 1


def h264_picture(units: list[bytes]) -> tuple[str, int | None]:
    """('IDR' | 'I' | 'P' | 'B', recovery_frame_cnt of a recovery-point SEI or None)."""
    recovery, kind = None, "?"
    for unit in units:
        nal_type = unit[0] & 0x1F
        if nal_type == 6 and unit[1] == 6:  # SEI whose first message is a recovery point
            recovery = _Bits(unit[3:]).ue()  # after payload type and one-byte size
        elif nal_type in (1, 5):
            bits = _Bits(unit[1:])
            bits.ue()  # first_mb_in_slice
            kind = "IDR" if nal_type == 5 else "PBI??"[bits.ue() % 5]
            break
    return kind, recovery


def video_packets(path: Path, raw_ts: bool = False) -> list[tuple[int, list[bytes]]]:
    """(pts, NAL units) of each video packet in decode order."""
    options = {"correct_ts_overflow": "0"} if raw_ts else {}
    with av.open(str(path), options=options) as container:
        stream = container.streams.video[0]
        annexb = container.format.name == "mpegts"
        return [
            (packet.pts, packet_nals(bytes(packet), annexb))
            for packet in container.demux(stream)
            if packet.size
        ]


def _frame_index(pts: int, first_pts: int, step: int) -> int:
    return (pts - first_pts) // step


def test_open_gop_h264_has_one_idr_then_i_frames_with_leading_b_frames(recordings):
    rec = recordings.get_or_raise("h264_open_gop")
    packets = video_packets(rec.segments[0].path)
    pictures = [(pts, *h264_picture(units)) for pts, units in packets]
    assert [kind for _, kind, _ in pictures].count("IDR") == 1 and pictures[0][1] == "IDR"
    step = _pts_step(rec)
    first = min(pts for pts, _, _ in pictures)
    opens = [i for i, (_, kind, _) in enumerate(pictures) if kind == "I"]
    assert [_frame_index(pictures[i][0], first, step) for i in opens] == [24, 48, 72]
    assert all(pictures[i][2] == 0 for i in opens)  # recovery point, recovery_frame_cnt 0
    for i in opens:  # leading pictures: after the I-frame in decode order, shown before it
        assert pictures[i + 1][0] < pictures[i][0] and pictures[i + 1][1] == "B"


def _pts_step(rec: Recording) -> int:
    with av.open(str(rec.segments[0].path)) as container:
        stream = container.streams.video[0]
        return int(rec.pieces[0].spec.frame_duration / stream.time_base)


def test_hevc_has_cra_pictures_with_rasl_leading_pictures(recordings):
    rec = recordings.get_or_raise("hevc_cra_rasl")
    packets = video_packets(rec.segments[0].path)
    types = [[(unit[0] >> 1) & 0x3F for unit in units] for _, units in packets]
    vcl = [next(t for t in ts if t < 32) for ts in types]
    assert vcl[0] in (19, 20) and not {19, 20} & set(vcl[1:])  # one IDR, at the start
    cras = [i for i, t in enumerate(vcl) if t == 21]
    first, step = packets[0][0], _pts_step(rec)
    assert [_frame_index(packets[i][0], first, step) for i in cras] == [24, 48, 72]
    for i in cras:  # RASL_N / RASL_R follow each CRA in decode order and show before it
        assert vcl[i + 1] in (8, 9) and packets[i + 1][0] < packets[i][0]


def test_intra_refresh_has_no_idr_after_the_first_frame_and_recovery_points(recordings):
    rec = recordings.get_or_raise("h264_intra_refresh")
    pictures = [h264_picture(units) for _, units in video_packets(rec.segments[0].path)]
    assert pictures[0][0] == "IDR"
    assert all(kind == "P" for kind, _ in pictures[1:])  # no IDR, no I-frame, no B-frame
    recoveries = [i for i, (_, count) in enumerate(pictures) if count]
    assert recoveries[:2] == [25, 50] and all(pictures[i][1] > 0 for i in recoveries)


def test_vfr_pts_spacing_changes_inside_the_file_and_bar_codes_follow_it(recordings):
    rec = recordings.get_or_raise("h264_vfr")
    with av.open(str(rec.segments[0].path)) as container:
        frames = [
            (float(f.pts * f.time_base), synth.frame_wall_time(f.to_ndarray(format="gray")))
            for f in container.decode(video=0)
        ]
    steps = {round(b[0] - a[0], 3) for a, b in zip(frames, frames[1:], strict=False)}
    assert steps == {0.04, 0.2}
    assert all(
        abs((wall - rec.segments[0].start).total_seconds() - t) < 0.001 for t, wall in frames
    )
    assert [synth.shown_time(s) for s, _ in rec.frames[0]] == [w for _, w in frames]


def test_full_range_source_is_tagged_pc_and_bt709(recordings):
    rec = recordings.get_or_raise("h264_full_range")
    with av.open(str(rec.segments[0].path)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.pix_fmt, ctx.color_range) == ("yuvj420p", synth.FULL_RANGE)
        assert (ctx.color_primaries, ctx.color_trc, ctx.colorspace) == (1, 1, 1)
        frame = next(container.decode(video=0))
    # A full-range background: RGB 96 stays 96 (limited range would store 98).
    assert background_luma(frame) == pytest.approx(96, abs=1)


def test_segments_change_frame_rate_resolution_and_overlap_as_claimed(recordings):
    def rate_and_size(path):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.average_rate, stream.codec_context.width, stream.codec_context.height

    fps = recordings.get_or_raise("fps_change").segments
    assert [rate_and_size(s.path)[0] for s in fps] == [25, 15, 25]
    res = recordings.get_or_raise("resolution_change").segments
    assert [rate_and_size(s.path)[1:] for s in res] == [(W, H), (W, H), (2 * W, 2 * H)]
    a, b = recordings.get_or_raise("overlap").segments
    assert a.end - b.start == timedelta(seconds=2)


def test_mpegts_timestamps_really_wrap_at_33_bits_mid_file_in_video_and_audio(recordings):
    rec = recordings.get_or_raise("ts_wrap")
    path = rec.segments[1].path
    # Read the raw timestamps: FFmpeg's demuxer would otherwise unwrap them for us.
    with av.open(str(path), options={"correct_ts_overflow": "0"}) as container:
        raw: dict[str, list[int]] = {"video": [], "audio": []}
        for packet in container.demux():
            if packet.size and packet.pts is not None:
                raw[packet.stream.type].append(packet.pts)
    for kind, pts in raw.items():
        jumps = [i for i, (a, b) in enumerate(zip(pts, pts[1:], strict=False)) if b < a - 2**32]
        assert len(jumps) == 1, kind
        before, after = pts[jumps[0]], pts[jumps[0] + 1]
        assert before > TS_WRAP_TICKS - 90000 and after < 90000, kind
        # The wrap is in the middle of the file, not at an end.
        assert 0.2 * len(pts) < jumps[0] < 0.8 * len(pts), kind
    # Without the raw option FFmpeg unwraps, so an exporter that reads raw packets must too.
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert sorted(pts) == sorted(set(pts)) and max(pts) - min(pts) < 4 * 90000


def test_long_gop_and_intra_only_streams_have_the_keyframes_claimed(recordings):
    def keyframe_indexes(path):
        with av.open(str(path)) as container:
            flags = [p.is_keyframe for p in container.demux(video=0) if p.size]
        return [i for i, key in enumerate(flags) if key], len(flags)

    keys, count = keyframe_indexes(recordings.get_or_raise("long_gop").segments[0].path)
    assert keys == [0, 250] and count == 300
    for kind in ("h264_intra_only", "mjpeg_intra_only"):
        keys, count = keyframe_indexes(recordings.get_or_raise(kind).segments[0].path)
        assert keys == list(range(count)), kind
    intra = video_packets(recordings.get_or_raise("h264_intra_only").segments[0].path)
    assert all(h264_picture(units)[0] == "IDR" for _, units in intra)


# -- the export matrix ------------------------------------------------------------------------


def background_luma(frame: av.VideoFrame) -> float:
    """Mean stored luma of a plain stretch of background (below the clock, above the block)."""
    luma = frame.to_ndarray()[: frame.height]  # the Y plane as stored, not range-converted
    top, bottom = frame.height * 30 // 120, frame.height * 90 // 120
    return float(luma[top:bottom].mean())


def describe(want: list[datetime], got: list[datetime]) -> str:
    """What an export lost or repeated, for a failure message worth reading."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    repeated = sorted({w for w in got if got.count(w) > 1})

    def short(times):
        shown = ", ".join(t.strftime("%S.%f")[:6] for t in times[:8])
        return f"{len(times)} [{shown}{' ...' if len(times) > 8 else ''}]"

    def at(times):
        return (
            times[0].strftime("%S.%f")[:6] + ".." + times[-1].strftime("%S.%f")[:6]
            if times
            else "-"
        )

    differ = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
    order = ""
    if differ is not None and not (missing or extra or repeated):
        window = slice(max(0, differ - 2), differ + 4)
        order = (
            f"; out of order from frame {differ}: {short(got[window])} for {short(want[window])}"
        )
    return (
        f"expected {len(want)} frames ({at(want)}), got {len(got)} ({at(got)}); "
        f"missing {short(missing)}; unexpected {short(extra)}; repeated {short(repeated)}{order}"
    )


def video_may_be_copied(rec: Recording, fmt: str) -> bool:
    reordered = any(p.spec.bframes for p in rec.pieces)
    return compat.can_copy(rec.video, fmt) and not (reordered and fmt in compat.NO_REORDER)


MATRIX = [(kind, cut, fmt) for kind in KINDS for cut in CUTS for fmt in FORMATS]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "cut", "fmt"), MATRIX)
def test_ffmpeg_shows_every_recorded_instant_once(recordings, exports, kind, cut, fmt):
    rec = recordings.get_or_raise(kind)
    out, result = exports.get_or_raise((kind, cut, fmt))
    want = rec.expected(*rec.cut(cut))
    walls = [shown for shown, _ in want]
    decoded = decode_with_pyav(out)
    assert decoded.format_name == CONTAINER_NAMES[fmt]
    assert decoded.walls == walls, describe(walls, decoded.walls)

    assert result.frames == len(want)
    assert abs(result.first_frame - walls[0]) <= timedelta(milliseconds=1)
    assert abs(result.last_frame - walls[-1]) <= timedelta(milliseconds=1)
    total = float(sum(lasts for _, lasts in want))
    assert result.duration_s == pytest.approx(total, abs=0.002)
    assert result.gaps == rec.gaps(*rec.cut(cut)) and result.skipped == []
    _check_times(decoded.times, want, fmt)
    _check_transcoded(rec, fmt, result.transcoded)
    if rec.audio:
        _check_audio(decoded, rec, fmt, total)


def _check_times(times: list[float], want, fmt: str) -> None:
    """Output times follow the recording: each frame lasts as long as it did."""
    if fmt == "avi":
        return  # AVI has no timestamps (decode_with_pyav numbers the frames)
    tolerance = 0.002  # mkv and flv count milliseconds
    if fmt == "asf":
        # FFmpeg's asf demuxer stamps frames from send times, up to a frame late (see
        # test_media_export.check_export): only the order and the overall span are kept.
        assert all(b >= a for a, b in zip(times, times[1:], strict=False))
        tolerance = float(max(lasts for _, lasts in want)) + 0.001
    else:
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        wanted = [float(lasts) for _, lasts in want[:-1]]
        bad = [
            (i, s, w)
            for i, (s, w) in enumerate(zip(steps, wanted, strict=True))
            if abs(s - w) > tolerance
        ]
        assert bad == [], f"frame steps off (index, got, want): {bad[:8]}"
    span = times[-1] - times[0] + float(want[-1][1])
    assert span == pytest.approx(float(sum(lasts for _, lasts in want)), abs=tolerance)


def _check_transcoded(rec: Recording, fmt: str, transcoded: list[str]) -> None:
    text = " ".join(transcoded)
    if rec.pieces[0].spec.width == rec.pieces[-1].spec.width:
        assert ("video:" not in text) == video_may_be_copied(rec, fmt), transcoded
    if rec.audio:
        assert (f"audio: {rec.audio}" not in text) == compat.can_copy(rec.audio, fmt), transcoded


def _check_audio(decoded, rec: Recording, fmt: str, total: float) -> None:
    assert decoded.audio is not None
    frame_s = 1024 / rec.pieces[0].spec.sample_rate
    # AAC adds up to an audio frame of priming and one of padding.
    assert len(decoded.audio) / decoded.sample_rate == pytest.approx(total, abs=2 * frame_s + 0.02)
    even = len({p.spec.fps for p in rec.pieces}) == 1 and not rec.pieces[0].spec.rate_drops
    # Frame times read from AVI (numbered frames) and ASF (stamped up to a frame late) are only
    # close enough at one constant rate.
    if fmt not in ("avi", "asf") or even:
        video_end = decoded.times[-1] + float(rec.frames[-1][-1][1])
        # A beep in the last two audio frames may belong to the second after the last frame.
        offsets = beep_offsets(decoded, until=video_end - 2 * frame_s)
        assert offsets and all(abs(o) <= 1.5 * frame_s for o in offsets), offsets


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "cut", "fmt"), MATRIX)
def test_gstreamer_shows_every_recorded_instant_once(recordings, exports, kind, cut, fmt, tmp_path):
    rec = recordings.get_or_raise(kind)
    out, _ = exports.get_or_raise((kind, cut, fmt))
    walls = [shown for shown, _ in rec.expected(*rec.cut(cut))]
    got = decode_with_gstreamer(out, W, H, tmp_path)
    assert got == walls, describe(walls, got)


# -- colour range, and Matroska from MPEG-TS ------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_range_survives_reencoded_frames_in_ffmpeg(exports, fmt):
    out, result = exports.get_or_raise(("h264_full_range", "mid_gop", fmt))
    assert result.reencoded_frames > 0 or result.technique == "transcode"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.color_range == synth.FULL_RANGE
        frames = [
            (f.color_range, f.color_primaries, f.color_trc, f.colorspace, background_luma(f))
            for f in container.decode(stream)
        ]
    tags = sorted({f[:4] for f in frames})
    assert tags == [(synth.FULL_RANGE, synth.BT709, synth.BT709, synth.BT709)], tags
    levels = [f[4] for f in frames]
    assert max(levels) - min(levels) < 1.5, f"luma jumps at a splice: {min(levels)}..{max(levels)}"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_full_range_survives_reencoded_frames_in_gstreamer(exports, fmt, tmp_path):
    out, _ = exports.get_or_raise(("h264_full_range", "mid_gop", fmt))
    frames = gstreamer_gray_frames(out, W, H, tmp_path)
    # GStreamer converts to grey by the colorimetry it reads for each frame (the level it gives
    # a full-range source depends on the container: 89 from mp4, 94 from mkv for our 96): a
    # re-encoded frame tagged differently from the copied ones comes out at another level, the
    # contrast jump a viewer sees at the splice.
    levels = frames[:, 30:90].mean(axis=(1, 2))
    assert np.ptp(levels) < 1.5, f"luma jumps at a splice: {levels.min()}..{levels.max()}"


@pytest.fixture(scope="module")
def ts_archive(tmp_path_factory):
    """MPEG-TS as a recorder writes it: H.264 with B-frames, AAC, timestamps running on."""
    pieces = [
        Piece(SEG * i, SEG, synth.SegmentSpec(bframes=2, **SMALL), ".ts", 100.0 + SEG * i)
        for i in range(3)
    ]
    return record(tmp_path_factory.mktemp("ts"), pieces)


@pytest.fixture(scope="module")
def ts_to_mkv(ts_archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("ts-mkv") / "out.mkv"
    return out, export(ts_archive.segments, *ts_archive.cut("mid_gop"), "mkv", out)


def test_mkv_from_mpegts_is_well_formed_for_ffmpeg(ts_archive, ts_to_mkv):
    out, _ = ts_to_mkv
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture() as logs:
            decoded = decode_with_pyav(out)
    finally:
        av.logging.set_level(level)
    complaints = [m for _, _, m in logs if re.search(r"exceeds|Duplicate|invalid|EBML", m, re.I)]
    assert complaints == []
    assert decoded.walls == [w for w, _ in ts_archive.expected(*ts_archive.cut("mid_gop"))]


def test_mkv_from_mpegts_is_accepted_by_matroskademux(ts_archive, ts_to_mkv, tmp_path):
    out, _ = ts_to_mkv
    require_gstreamer_for(out)
    # matroskademux itself, not whatever decodebin prefers; an error fails the run.
    run_gst_launch(
        "filesrc",
        f"location={out}",
        "!",
        "matroskademux",
        "name=d",
        "d.video_0",
        "!",
        "queue",
        "!",
        "fakesink",
        "d.audio_0",
        "!",
        "queue",
        "!",
        "fakesink",
    )
    got = decode_with_gstreamer(out, W, H, tmp_path)
    assert got == [w for w, _ in ts_archive.expected(*ts_archive.cut("mid_gop"))]


def test_gstreamer_checks_name_the_elements_they_need(tmp_path):
    from tests.media_helpers import GST_INSPECT, GST_PACKAGES, gst_elements_for, gst_has

    path = tmp_path / "a.avi"
    synth.write_segment(
        path, T0, 0.2, synth.SegmentSpec(acodec="pcm_mulaw", sample_rate=8000, **SMALL)
    )
    needed = gst_elements_for(path)
    assert {"avidemux", "h264parse", "avdec_h264", "mulawdec"} <= set(needed)
    assert all(name in GST_PACKAGES for name in needed)
    if GST_INSPECT is not None:  # what gst_has relies on: --exists fails for unknown elements
        assert subprocess.run([GST_INSPECT, "--exists", "no-such-element-xyz"]).returncode
        assert gst_has("filesrc") and not gst_has("no-such-element-xyz")
