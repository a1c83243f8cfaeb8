"""The export plan: which recorded packets go into the output file, how, and when. Pure.

`make_plan(segments, start, end, fmt)` decides from the frame indexes alone (no file is read,
nothing decoded), so every decision can be tested on hand-built indexes (tests/test_plan.py):

- which video frames are wanted: on screen in [start, end) and not already shown by an
  earlier, overlapping segment (each wall instant once);
- which of them can be decoded at all, and from which random access point (an open GOP's
  leading pictures need the previous GOP; an intra-refresh picture needs its recovery count);
- per segment, in output decode order: a re-encoded head (the frames before the first copyable
  random access point, decoded from an earlier one to warm the decoder), one stream-copied run
  (the leading pictures of its first, open, access point left out: they are in the head), and a
  re-encoded tail (frames a copy cannot end on when frames are reordered);
- the audio packets kept (their middle inside the kept video of the segment), contiguous;
- gaps with their reasons, and what was left out and why.

Memory: `make_plan` keeps every segment's plan (tests, short ranges). A long export does not
hold a plan of a day of frames: `outline_plan` plans each segment as its index comes and keeps
only its `SegmentOutline` (counts, times, step kinds) and the one dts delay; the executor asks
`Plan.segment_plans` for each segment's full plan when it gets there, which plans that segment
again from its index, the same way (the planner is deterministic and carries its state along).

One time unit: every output timestamp is an integer number of `Plan.unit` seconds, chosen so
that each source time base and audio frame is an exact multiple of it (1 / the least common
multiple of their denominators). Output decode times are derived, not copied: the i-th output
packet's dts is the i-th smallest output pts minus one `delay` for the whole file, the smallest
that keeps dts <= pts, so joins of copied and re-encoded frames always increase strictly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import compat
from .errors import ExportError, NoRecordingError
from .frameindex import Kind, SegmentIndex, StreamIndex, StreamInfo

RANDOM_ACCESS = (Kind.IDR, Kind.OPEN, Kind.RECOVERY)
COPY_START = (Kind.IDR, Kind.OPEN)  # a copy may begin only where a decoder starts cleanly
LEADING = (Kind.LEADING, Kind.LEADING_OK)
MAX_UNIT_DENOMINATOR = 1 << 40  # int64 still holds years of output at this resolution


def _is(kind: np.ndarray, kinds) -> np.ndarray:
    """kind in kinds, elementwise (np.isin costs ~0.1 ms a call: too much per segment)."""
    mask = kind == int(kinds[0])
    for other in kinds[1:]:
        mask |= kind == int(other)
    return mask


@dataclass(frozen=True)
class PlanSegment:
    """One recorded file as the planner sees it."""

    path: Path
    wall_start: datetime  # wall time of its first video frame (its smallest pts)
    index: SegmentIndex


@dataclass(frozen=True)
class SegmentSummary:
    """What decisions for the whole file need of one segment: no per-frame arrays."""

    path: Path
    wall_start: datetime
    container: str
    damaged: str
    video: StreamInfo | None  # None: no video frame
    audio: StreamInfo | None  # the audio stream, if any (it may have no packet)
    audio_packets: int
    reordered: bool  # video frames presented in another order than decoded (B-frames)
    frame_rate: Fraction

    @classmethod
    def of(cls, seg: PlanSegment) -> SegmentSummary:
        video, audio = seg.index.video, seg.index.audio
        has_video = video is not None and len(video.pts) > 0
        return cls(
            seg.path,
            seg.wall_start,
            seg.index.container,
            seg.index.damaged,
            video.info if has_video else None,
            audio.info if audio is not None else None,
            len(audio.pts) if audio is not None else 0,
            has_video and _is_reordered(video),
            _frame_rate(video) if has_video else Fraction(25),
        )


@dataclass(frozen=True, eq=False)
class Copy:
    """Video packets stream-copied, in source decode order."""

    segment: int  # position in the plan's segment list
    packets: np.ndarray  # source packet numbers (decode order), as written
    pts: np.ndarray  # output pts, unit
    dts: np.ndarray  # output dts, unit
    dropped: np.ndarray  # packets inside the run that are left out (leading pictures)
    position: int = 0  # in its segment's steps: (segment, position) names a step in any replay


@dataclass(frozen=True, eq=False)
class Reencode:
    """Video frames decoded and encoded again."""

    segment: int
    decode_from: int  # packets [decode_from, decode_to) go through the decoder ...
    decode_to: int
    frames: np.ndarray  # ... and these packets' pictures are encoded, in presentation order
    pts: np.ndarray  # output pts per encoded frame, unit
    dts: np.ndarray
    reason: str
    position: int = 0

    @property
    def warmup(self) -> int:
        """Packets decoded only so that the wanted pictures decode correctly."""
        return self.decode_to - self.decode_from - len(self.frames)


@dataclass(frozen=True, eq=False)
class AudioRun:
    """The audio of one segment: which packets, and where they go."""

    segment: int
    packets: np.ndarray  # source audio packet numbers kept
    pts: np.ndarray  # output pts, unit (copies are kept contiguous)
    duration: np.ndarray  # unit
    window: tuple[int, int]  # source time (unit) of the kept video: transcoding trims to it
    offset: int  # output time = source time + offset (unit)


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True, eq=False)
class SegmentPlan:
    segment: int
    path: Path
    video: list[Copy | Reencode]  # output decode order
    audio: AudioRun | None
    frames: int
    first_frame: datetime
    last_frame: datetime
    out_start: int  # unit
    out_end: int

    def outline(self) -> SegmentOutline:
        return SegmentOutline(
            self.segment,
            self.path,
            tuple("copy" if isinstance(step, Copy) else "reencode" for step in self.video),
            tuple((len(s.frames), s.reason) for s in self.video if isinstance(s, Reencode)),
            None if self.audio is None else len(self.audio.packets),
            self.frames,
            self.first_frame,
            self.last_frame,
            self.out_start,
            self.out_end,
        )


@dataclass(frozen=True)
class SegmentOutline:
    """A SegmentPlan without its per-frame arrays: what the whole file needs to know of it."""

    segment: int
    path: Path
    steps: tuple[str, ...]  # "copy" | "reencode" per video step, output decode order
    reencoded: tuple[tuple[int, str], ...]  # (frames, reason) per re-encoded step
    audio_packets: int | None  # None: no audio run
    frames: int
    first_frame: datetime
    last_frame: datetime
    out_start: int
    out_end: int


@dataclass(eq=False)
class Plan:
    fmt: str
    unit: Fraction  # seconds per tick of every output timestamp
    video_codec: str
    video_mode: str  # copy | transcode
    audio_codec: str | None
    audio_mode: str | None  # None (no audio) | copy | transcode
    frame_rate: Fraction  # nominal, for encoders and frame-counting muxers
    segments: list[SegmentPlan]  # every segment's full plan; empty in an outline plan
    gaps: list[Gap] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    transcoded: list[str] = field(default_factory=list)
    delay: int = 0  # output pts - dts of the first packet, unit
    outlines: list[SegmentOutline] = field(default_factory=list)  # one per planned segment
    summaries: list[SegmentSummary] = field(default_factory=list)  # per input segment
    replan: tuple | None = None  # (start, end): an outline plan, segment_plans plans again

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.outlines)

    @property
    def duration(self) -> int:
        return self.outlines[-1].out_end if self.outlines else 0

    @property
    def reencoded_frames(self) -> int:
        if self.video_mode == "transcode":
            return 0
        return sum(frames for o in self.outlines for frames, _ in o.reencoded)

    @property
    def first_frame(self) -> datetime | None:
        return self.outlines[0].first_frame if self.outlines else None

    @property
    def last_frame(self) -> datetime | None:
        return self.outlines[-1].last_frame if self.outlines else None

    def segment_plans(self, segments) -> Iterator[SegmentPlan]:
        """Each planned segment's full plan, in order; `segments[k]` gives segment k with its
        index (for an outline plan, whose segments are planned again one at a time)."""
        if self.replan is None:
            yield from self.segments
            return
        planner = _Planner(self.summaries, *self.replan, self.fmt)
        for number in planner.usable:
            planned = planner.add(number, segments[number])
            if planned is not None:
                _set_dts(planned, self.delay)
                yield planned

    @property
    def technique(self) -> str:
        if self.video_mode == "transcode":
            return "transcode"
        return "exact_cut" if self.reencoded_frames else "stream_copy"

    def video_steps(self):
        for segment in self.segments:
            yield from segment.video

    def seconds(self, ticks: int) -> Fraction:
        return ticks * self.unit


# -- decisions for the whole file --------------------------------------------------------------


def _is_reordered(video: StreamIndex) -> bool:
    return bool(len(video.pts) > 1 and np.any(np.diff(video.pts) < 0))


def _video_mode(segments: list[SegmentSummary], fmt: str) -> tuple[str, str, list[str]]:
    infos = [s.video for s in segments]
    codec = infos[0].codec
    shapes = {(i.codec, i.width, i.height) for i in infos}
    if len(shapes) > 1:
        changes = ", ".join(f"{c} {w}x{h}" for c, w, h in sorted(shapes))
        why = f"codec or resolution changes between segments: {changes}"
        return "transcode", codec, [f"video: {codec} -> h264 ({why})"]
    if fmt in compat.NO_REORDER and any(s.reordered for s in segments):
        return "transcode", codec, [f"video: {codec} -> h264 ({compat.NO_REORDER[fmt]})"]
    if compat.can_copy(codec, fmt) and codec in compat.SMART_CUT | compat.INTRA_ONLY:
        return "copy", codec, []
    why = compat.copy_refusal(codec, fmt)
    if compat.can_copy(codec, fmt):
        why = f"{codec} cannot be cut exactly without re-encoding"
    return "transcode", codec, [f"video: {codec} -> h264 ({why})"]


def _audio_mode(
    segments: list[SegmentSummary], fmt: str
) -> tuple[str | None, str | None, list[str]]:
    audios = {
        (s.audio.codec, s.audio.sample_rate, s.audio.channels)
        for s in segments
        if s.audio is not None and s.audio_packets
    }
    if not audios:
        return None, None, []
    codec = sorted(audios)[0][0]
    if len(audios) > 1:
        return (
            "transcode",
            codec,
            [f"audio: {codec} -> aac (audio format changes between segments)"],
        )
    if compat.can_copy(codec, fmt):
        return "copy", codec, []
    return "transcode", codec, [f"audio: {codec} -> aac ({compat.copy_refusal(codec, fmt)})"]


def _unit(segments: list[SegmentSummary]) -> Fraction:
    """1 / the lcm of every time base's denominator (and audio rate): all exact in it."""
    denominator = 1
    for segment in segments:
        for info in (segment.video, segment.audio):
            if info is None:
                continue
            denominator = math.lcm(denominator, info.time_base.denominator)
            if info.sample_rate:
                denominator = math.lcm(denominator, info.sample_rate)
    if denominator > MAX_UNIT_DENOMINATOR:
        return Fraction(1, 90000 * 1000)
    return Fraction(1, denominator)


def _frame_rate(video: StreamIndex) -> Fraction:
    if video.info.frame_rate:
        return Fraction(video.info.frame_rate)
    positive = video.duration[video.duration > 0]
    if len(positive):
        return 1 / (int(np.median(positive)) * video.info.time_base)
    return Fraction(25)


# -- one segment's video -------------------------------------------------------------------------


class _Decodability:
    """From which packet decoding must start for each frame of a segment to come out right."""

    def __init__(self, video: StreamIndex):
        self.kind = video.kind
        self.recovery = video.recovery
        positions = np.arange(len(self.kind))
        is_rap = _is(self.kind, RANDOM_ACCESS)
        # Latest random access point at or before each packet, -1 when there is none.
        self.rap_before = np.maximum.accumulate(np.where(is_rap, positions, -1))
        # The usual recording: clean access points only, nothing leading or recovering.
        self.simple = not _is(self.kind, (Kind.RECOVERY, Kind.LEADING)).any()

    def owner(self, j: int) -> int:
        """The random access point whose GOP packet j belongs to (decode order)."""
        return int(self.rap_before[j])

    def starts_for(self, frames: np.ndarray) -> np.ndarray:
        """`start_for` of many frames at once: the nearest two access points checked with
        numpy, the rare rest (a recovery still incomplete two points back) one by one."""
        kind, recovery = self.kind, self.recovery.astype(np.int64)
        first = self.rap_before[frames]
        if self.simple:
            return first  # only IDRs and open points, no leading picture: the nearest one
        leading = kind[frames] == Kind.LEADING
        second = np.where(first > 0, self.rap_before[np.maximum(first - 1, 0)], -1)

        def valid(r, own):
            k = kind[np.maximum(r, 0)]
            clean = (k == Kind.IDR) | ((k == Kind.OPEN) & ~(leading & own))
            recovered = (k == Kind.RECOVERY) & ~(leading & own)
            recovered &= frames - r >= recovery[np.maximum(r, 0)]
            return (r >= 0) & (clean | recovered)

        ok1, ok2 = valid(first, True), valid(second, False)
        starts = np.where(ok1, first, np.where(ok2, second, -1))
        for at in np.flatnonzero(~ok1 & ~ok2 & (second > 0)):
            starts[at] = self.start_for(int(frames[at]))
        return starts

    def start_for(self, j: int) -> int:
        """The packet to start decoding at so that frame j is correct; -1 when impossible."""
        leading = self.kind[j] == Kind.LEADING
        r = self.owner(j)
        while r >= 0:
            kind = self.kind[r]
            own_gop = r == self.owner(j)
            if kind == Kind.IDR:
                return r
            if kind == Kind.OPEN and not (leading and own_gop):
                return r
            if kind == Kind.RECOVERY and not (leading and own_gop):
                if j - r >= int(self.recovery[r]):
                    return r
            r = self.owner(r - 1) if r > 0 else -1
        return -1


@dataclass
class _SegmentVideo:
    """The kept frames of one segment and how they are produced, before output timing."""

    kept: np.ndarray  # packet numbers kept, any order
    steps: list  # ("reencode", decode_from, decode_to, frames, reason) | ("copy", packets, dropped)
    undecodable: int  # wanted frames that cannot be decoded
    undecodable_reason: str


def _wanted(seg: PlanSegment, start: datetime, end: datetime, after: datetime | None):
    """Mask of the frames on screen in [start, end) and not shown by an earlier segment."""
    video = seg.index.video
    pts, dur = video.pts, np.maximum(video.duration, 1)
    pts0 = int(pts.min())
    tb = video.info.time_base
    low = pts0 + math.floor(_seconds_between(seg.wall_start, start) / tb)
    high = pts0 + math.ceil(_seconds_between(seg.wall_start, end) / tb)
    wanted = (pts < high) & (pts + dur > low)
    if after is not None:
        # Overlap: this segment resumes where the previous one's last kept frame ended (half a
        # frame of tolerance, so recorder jitter does not drop a whole frame).
        resume = pts0 + round(_seconds_between(seg.wall_start, after) / tb)
        wanted &= 2 * pts + dur >= 2 * resume
    return wanted


def _seconds_between(a: datetime, b: datetime) -> Fraction:
    return Fraction((b - a) // timedelta(microseconds=1), 1_000_000)


def _plan_segment_video(
    seg: PlanSegment, wanted: np.ndarray, mode: str, why: str, first_in_file: bool
) -> _SegmentVideo:
    video = seg.index.video
    decode = _Decodability(video)
    candidates = np.flatnonzero(wanted)
    starts = np.full(len(wanted), -1, dtype=np.int64)
    starts[candidates] = decode.starts_for(candidates)
    bad = candidates[starts[candidates] < 0]
    kept_mask = wanted.copy()
    kept_mask[bad] = False
    reason = ""
    if len(bad):
        leading = int((video.kind[bad] == Kind.LEADING).sum())
        if leading == len(bad):
            reason = "leading pictures of an open GOP whose references precede the file"
        elif decode.owner(int(bad.max())) < 0:
            reason = "frames before its first keyframe"
        else:
            reason = "frames whose references are missing"
    kept = np.flatnonzero(kept_mask)
    if not len(kept):
        return _SegmentVideo(kept, [], len(bad), reason)
    if mode == "transcode":
        return _SegmentVideo(kept, [_reencode(video, kept, starts, why)], len(bad), reason)
    steps = _smart_cut(video, decode, kept_mask, starts, first_in_file)
    return _SegmentVideo(kept, steps, len(bad), reason)


def _reencode(video: StreamIndex, frames: np.ndarray, starts: np.ndarray, reason: str):
    frames = frames[np.argsort(video.pts[frames], kind="stable")]
    decode_from = int(starts[frames].min())
    return ("reencode", decode_from, int(frames.max()) + 1, frames, reason)


def _smart_cut(
    video: StreamIndex,
    decode: _Decodability,
    kept: np.ndarray,
    starts: np.ndarray,
    first_in_file: bool,
):
    """Head re-encode, one copy run, tail re-encode: the least re-encoding that is exact."""
    pts = video.pts
    kept_at = np.flatnonzero(kept)
    first_pts = int(pts[kept_at].min())
    copy_start = _copy_start(video, kept, first_pts)
    if (
        copy_start is not None
        and video.info.codec == "h264"
        and video.kind[copy_start] == Kind.OPEN
        and not (first_in_file and int(pts[copy_start]) == first_pts)
    ):
        # An H.264 open-GOP I-frame orders its pictures (POC) after the previous stream's:
        # after other frames FFmpeg shows it before their last ones. Only an IDR resets that,
        # so a copy that is not the file's very first picture starts at an IDR.
        copy_start = _copy_start(video, kept, first_pts, (Kind.IDR,))
    if copy_start is None:
        why = (
            "the range lies inside one GOP"
            if decode.owner(int(kept_at.max())) == decode.owner(int(kept_at.min()))
            else "no IDR or I-frame after the cut in the rest of the segment"
        )
        return [_reencode(video, kept_at, starts, why)]
    c_pts = int(pts[copy_start])
    n = len(pts)
    positions = np.arange(copy_start, n)
    leading = (
        _is(video.kind[copy_start:], LEADING)
        & (decode.rap_before[copy_start:] == copy_start)
        & (positions > copy_start)
        & (pts[copy_start:] < c_pts)
    )
    usable = kept[copy_start:] | leading
    stop = copy_start + (int(np.argmin(usable)) if not usable.all() else len(usable))
    stop = _copy_stop(pts, kept & ~_pad(leading, copy_start), leading, copy_start, stop)
    steps = []
    head = kept_at[pts[kept_at] < c_pts]
    if len(head):
        why = (
            "the range starts between keyframes"
            if not np.any(leading[: stop - copy_start] & kept[copy_start:stop])
            else "leading pictures of the open GOP at the cut need the GOP before it"
        )
        steps.append(_reencode(video, head, starts, why))
    run = np.arange(copy_start, stop)
    dropped_mask = leading[: stop - copy_start]
    steps.append(("copy", run[~dropped_mask], run[dropped_mask]))
    tail = kept_at[(kept_at >= stop) & (pts[kept_at] >= c_pts)]
    if len(tail):
        steps.append(
            _reencode(video, tail, starts, "the range ends inside a GOP with reordered frames")
        )
    placed = len(head) + int((~dropped_mask).sum()) + len(tail)
    if placed != len(kept_at):
        # Frames decoded before the access point yet presented after it: no exact copy.
        return [_reencode(video, kept_at, starts, "timestamps out of order around the cut")]
    return steps


def _pad(mask: np.ndarray, before: int) -> np.ndarray:
    """`mask` of packets [before, n) as a mask of all n packets."""
    return np.concatenate([np.zeros(before, dtype=bool), mask])


def _copy_start(
    video: StreamIndex, kept: np.ndarray, first_pts: int, kinds=COPY_START
) -> int | None:
    """The first clean access point that is kept and not presented before the range."""
    ok = _is(video.kind, kinds) & kept & (video.pts >= first_pts)
    found = np.flatnonzero(ok)
    return int(found[0]) if len(found) else None


def _copy_stop(pts, kept, leading, copy_start: int, stop: int) -> int:
    """Shorten the run so that nothing re-encoded after it is presented before its last frame.

    `kept` here leaves out the run's leading pictures: they are re-encoded before the run.
    """
    while stop > copy_start + 1:
        after = np.flatnonzero(kept[stop:]) + stop
        run_max = int(pts[copy_start:stop][~leading[: stop - copy_start]].max())
        if not len(after) or int(pts[after].min()) > run_max:
            return stop
        stop -= 1
    return stop


# -- the plan ------------------------------------------------------------------------------------


class _Timeline:
    """Places segments back to back on the output timeline and notes the gaps between them."""

    def __init__(self, start: datetime, end: datetime):
        self.start, self.end = start, end
        self.out_end = 0
        self.wall_end: datetime | None = None  # end of the last kept frame, wall time
        self.gaps: list[Gap] = []

    def note(self, first: datetime, last_end: datetime, frame: timedelta, reason: str):
        at = self.wall_end if self.wall_end is not None else self.start
        if first - at > frame / 2:
            self.gaps.append(Gap(at, first, reason))
        self.wall_end = last_end
        self.last_frame = frame

    def close(self):
        if self.wall_end is not None and self.end - self.wall_end > self.last_frame / 2:
            self.gaps.append(Gap(self.wall_end, self.end, "not recorded"))


def make_plan(segments: list[PlanSegment], start: datetime, end: datetime, fmt: str) -> Plan:
    """Plan the export of [start, end) from `segments` (wall order) into container `fmt`."""
    ordered = sorted(segments, key=lambda s: s.wall_start)
    planner = _Planner([SegmentSummary.of(s) for s in ordered], start, end, fmt)
    for number in planner.usable:
        planned = planner.add(number, ordered[number])
        if planned is not None:
            planner.plan.segments.append(planned)
    plan = planner.finish()
    for planned in plan.segments:
        _set_dts(planned, plan.delay)
    return plan


def outline_plan(
    summaries: list[SegmentSummary], segments, start: datetime, end: datetime, fmt: str
) -> Plan:
    """`make_plan` keeping only each segment's outline (see the module docstring): segment k
    is `segments[k]` (its index loaded then), summarised in `summaries[k]`, in wall order."""
    planner = _Planner(summaries, start, end, fmt)
    for number in planner.usable:
        planner.add(number, segments[number])
    plan = planner.finish()
    plan.replan = (start, end)
    return plan


class _Planner:
    """Plans segments one at a time in wall order, carrying what joins them: the output
    timeline, the audio's continuity, gaps, skipped files, the largest dts delay."""

    def __init__(self, summaries: list[SegmentSummary], start, end, fmt: str):
        skipped: list[str] = []
        self.usable = []
        for number, summary in enumerate(summaries):
            if summary.video is None:
                skipped.append(f"{summary.path.name}: no video stream")
                continue
            if summary.damaged:
                skipped.append(
                    f"{summary.path.name}: truncated, read up to the damage ({summary.damaged})"
                )
            self.usable.append(number)
        if not self.usable:
            raise NoRecordingError("no readable recording in the requested range")
        usable = [summaries[number] for number in self.usable]
        video_mode, video_codec, transcoded = _video_mode(usable, fmt)
        audio_mode, audio_codec, audio_why = _audio_mode(usable, fmt)
        self.plan = Plan(
            fmt=fmt,
            unit=_unit(usable),
            video_codec=video_codec,
            video_mode=video_mode,
            audio_codec=audio_codec,
            audio_mode=audio_mode,
            frame_rate=usable[0].frame_rate,
            segments=[],
            skipped=skipped,
            transcoded=transcoded + audio_why,
            summaries=summaries,
        )
        self.start, self.end = start, end
        self.timeline = _Timeline(start, end)
        self.audio_next = [0]  # output pts the next copied audio packet should have
        self.why = transcoded[0].split("(", 1)[-1].rstrip(")") if transcoded else ""
        self.last_usable = self.usable[-1]
        self.delay = 0

    def add(self, number: int, seg: PlanSegment) -> SegmentPlan | None:
        """Plan segment `number` (the next usable one); None when none of its frames is kept.
        Its steps' dts are set by the caller (`_set_dts`) once the file's delay is known."""
        plan = self.plan
        wanted = _wanted(seg, self.start, self.end, self.timeline.wall_end)
        if not wanted.any():
            return None
        first_in_file = not plan.outlines
        planned = _plan_segment_video(seg, wanted, plan.video_mode, self.why, first_in_file)
        if planned.undecodable:
            plan.skipped.append(
                f"{seg.path.name}: {planned.undecodable} {planned.undecodable_reason} are not"
                " decodable and were left out"
            )
        if not len(planned.kept):
            return None
        last = number == self.last_usable
        placed = _place(plan, number, seg, planned, self.timeline, self.audio_next, last)
        plan.outlines.append(placed.outline())
        self.delay = max(self.delay, _segment_delay(placed))
        return placed

    def finish(self) -> Plan:
        self.timeline.close()
        plan = self.plan
        if not plan.outlines:
            detail = f" ({'; '.join(plan.skipped)})" if plan.skipped else ""
            raise NoRecordingError(
                f"no video frame recorded between {self.start} and {self.end}{detail}"
            )
        plan.gaps = self.timeline.gaps
        plan.delay = self.delay
        return plan


def _place(
    plan: Plan,
    number: int,
    seg: PlanSegment,
    planned: _SegmentVideo,
    timeline: _Timeline,
    audio_next: list[int],
    last_segment: bool,
) -> SegmentPlan:
    """Give a segment's frames their output pts (back to back after the previous segment)."""
    video = seg.index.video
    tb = video.info.time_base
    scale = int(tb / plan.unit)
    pts, dur = video.pts, np.maximum(video.duration, 1)
    kept = planned.kept
    first = int(pts[kept].min())
    last = int(kept[np.argmax(pts[kept])])
    out_start = timeline.out_end
    offset = out_start - first * scale  # output = source pts * scale + offset
    end_src = int((pts[kept] + dur[kept]).max())
    out_end = end_src * scale + offset
    steps = []
    for step in planned.steps:
        if step[0] == "copy":
            _, packets, dropped = step
            out = pts[packets] * scale + offset
            steps.append(Copy(number, packets, out, out.copy(), dropped, len(steps)))
        else:
            _, d_from, d_to, frames, reason = step
            out = pts[frames] * scale + offset
            steps.append(
                Reencode(number, d_from, d_to, frames, out, out.copy(), reason, len(steps))
            )
    pts0 = int(pts.min())

    def wall(ticks: int) -> datetime:
        return seg.wall_start + timedelta(seconds=float((ticks - pts0) * tb))

    frame = timedelta(seconds=float(int(dur[last]) * tb))
    reason = "not recorded"
    if planned.undecodable:
        reason = f"{planned.undecodable} {planned.undecodable_reason} of {seg.path.name} are not decodable"
    timeline.note(wall(first), wall(end_src), frame, reason)
    timeline.out_end = out_end
    audio = None
    if plan.audio_mode and seg.index.audio is not None and len(seg.index.audio.pts):
        window = (first * scale, end_src * scale)
        final = last_segment or wall(end_src) + frame / 2 >= timeline.end
        audio = _plan_audio(plan, number, seg.index.audio, window, offset, audio_next, final)
    return SegmentPlan(
        number,
        seg.path,
        steps,
        audio,
        len(kept),
        wall(first),
        wall(int(pts[last])),
        out_start,
        out_end,
    )


def _plan_audio(
    plan: Plan,
    number: int,
    audio: StreamIndex,
    window: tuple[int, int],
    offset: int,
    audio_next: list[int],
    last: bool,
) -> AudioRun:
    """Keep the audio packets whose middle lies in the kept video; copies stay contiguous.

    Contiguity: a packet within half a frame of where the previous one ended is moved there
    (players count samples, so a join must not open a hole or overlap); one starting more than
    half a frame before it is audio already written from the previous segment and is dropped.
    """
    scale = int(audio.info.time_base / plan.unit)
    info = audio.info
    whole = 0
    if info.frame_size and info.sample_rate:
        whole = int(Fraction(info.frame_size, info.sample_rate) / plan.unit)
    src = audio.pts * scale
    # A segment's last AAC frame may be marked short, yet decodes to a whole frame.
    dur = np.maximum(audio.duration * scale, whole)
    middle2 = 2 * src + dur
    if plan.audio_mode == "transcode":
        chosen = np.flatnonzero((src + dur > window[0]) & (src < window[1]))
        return AudioRun(number, chosen, src[chosen] + offset, dur[chosen], window, offset)
    inside = (middle2 >= 2 * window[0]) & (middle2 < 2 * window[1])
    if last:
        # The file's end: no sound from after the range (a beep starting right after it).
        inside &= src + dur <= window[1]
    chosen = np.flatnonzero(inside)
    packets, out, floor = _contiguous(chosen, src[chosen] + offset, dur[chosen], audio_next[0])
    audio_next[0] = floor
    return AudioRun(number, packets, out, dur[packets], window, offset)


def _contiguous(packets: np.ndarray, at: np.ndarray, dur: np.ndarray, floor: int):
    """Apply the contiguity rule of `_plan_audio` block by block: inside a block of packets
    that already follow each other exactly, one shift (or drop) decision covers them all."""
    starts = np.flatnonzero(np.concatenate(([True], at[1:] != at[:-1] + dur[:-1])))
    ends = np.append(starts[1:], len(at))
    keep = np.ones(len(at), dtype=bool)
    out = at.copy()
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        # Packets of the block starting more than half a frame before the floor: written.
        early = np.flatnonzero(2 * at[a:b] < 2 * floor - dur[a:b])
        first = a + (int(early[-1]) + 1 if len(early) else 0)
        keep[a:first] = False
        if first == b:
            continue
        shift = floor - int(at[first]) if 2 * at[first] <= 2 * floor + dur[first] else 0
        out[first:b] = at[first:b] + shift
        floor = int(out[b - 1] + dur[b - 1])
    return packets[keep], out[keep], floor


def _segment_delay(planned: SegmentPlan) -> int:
    """The least delay that keeps this segment's dts <= pts (see `_set_dts`).

    Segments occupy disjoint, increasing stretches of output time, so the i-th smallest pts
    of the file is the i-th smallest of its segment: each segment can be done alone."""
    in_order = np.concatenate([step.pts for step in planned.video])
    ordered = np.sort(in_order)
    if len(ordered) > 1 and np.any(np.diff(ordered) <= 0):
        raise ExportError("two output frames would share one presentation time")
    return max(0, int((ordered - in_order).max()))


def _set_dts(planned: SegmentPlan, delay: int) -> None:
    """The i-th packet's output dts is the i-th smallest output pts minus one `delay` for the
    whole file, so joins of copied and re-encoded frames always increase strictly."""
    dts = np.sort(np.concatenate([step.pts for step in planned.video])) - delay
    at = 0
    for step in planned.video:
        step.dts[:] = dts[at : at + len(step.pts)]
        at += len(step.pts)
