"""Smart-cut spans encoded ahead: while the rest of the archive is indexed and planned, the
re-encoded frames at the start and end of the range are decoded and encoded in a thread.

The first and last segments are indexed first and each is planned alone; their re-encoded
spans go to one background thread (one decoder at a time, as the executor has). PyAV releases
the GIL while it decodes and encodes, so that work overlaps the Python of indexing and
planning the other segments. The executor takes a span's packets only where the full plan
re-encodes exactly the same frames of the same file with the same encoder settings (its
`SpanKey`); anywhere else, or if the work ahead failed, it encodes the span itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av

from .executor import DEMUX_OPTIONS, SmartCutVideo, _Span, decode_span
from .frameindex import StreamInfo
from .plan import Plan, PlanSegment, Reencode, make_plan

# x264 ids for the runs encoded ahead, counted down from the top so that they differ from those
# the executor gives the runs it encodes itself (counted up from 1) and from the copy's (0).
_FIRST_SPS_ID = 31


@dataclass(frozen=True)
class SpanKey:
    """Everything the encoded packets of a span depend on."""

    path: Path
    decode_from: int
    decode_to: int
    frames: tuple[int, ...]
    codec: str
    info: StreamInfo  # of the output's first segment: the encoder's colour and pixel format
    rate: Fraction
    profile: object
    level: int


def span_key(path: Path, step: Reencode, video) -> SpanKey:
    """The key of `step` of the file at `path` for an output `video` (a SmartCutVideo)."""
    return SpanKey(
        Path(path),
        int(step.decode_from),
        int(step.decode_to),
        tuple(step.frames.tolist()),
        video.plan.video_codec,
        video.info,
        Fraction(video.rate),
        video.profile,
        int(video.level),
    )


class SpansAhead:
    """The spans encoded ahead, each as (frame number in the span, data, keyframe) packets."""

    def __init__(self):
        self.jobs: list[tuple[SpanKey, PlanSegment, Reencode, _Capture]] = []
        self.results: dict[SpanKey, list | None] = {}
        self.done = threading.Event()
        self.stop = threading.Event()  # the export ended first (failed, cancelled)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.jobs:
            self.done.set()
            return
        self.thread = threading.Thread(target=self._run, name="smart-cut-ahead", daemon=True)
        self.thread.start()

    def has(self, key: SpanKey) -> bool:
        """Whether the span `key` is being encoded ahead."""
        return any(job[0] == key for job in self.jobs)

    def take(self, key: SpanKey) -> list | None:
        """The packets of the span `key` (waiting for the thread), or None: encode it yourself."""
        if not self.has(key):
            return None
        self.done.wait()
        return self.results.get(key)

    def close(self) -> None:
        """Stop the work (within a packet) if the export no longer wants it, and wait."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        try:
            for key, seg, step, capture in self.jobs:
                try:
                    self.results[key] = _encode(seg, step, capture, self.stop.is_set)
                except Exception:  # noqa: BLE001 - the executor encodes it and reports
                    self.results[key] = None
        finally:
            self.done.set()


def spans_ahead(chosen: list, start: datetime, end: datetime, fmt: str, index_for) -> SpansAhead:
    """Start encoding the re-encoded spans of the first and last of `chosen` (SourceSegments,
    in time order), each planned alone. `index_for` is the engine's (memoised) indexer."""
    ahead = SpansAhead()
    ends = [chosen[0]] if len(chosen) == 1 else [chosen[0], chosen[-1]]
    try:
        alone = [PlanSegment(s.path, s.start, index_for(s.path)) for s in ends]
        rates = [s.index.video.info.frame_rate for s in alone if s.index.video.info.frame_rate]
        spans = []
        for seg in alone:
            plan = make_plan([seg], start, end, fmt)
            if plan.video_mode == "copy" and rates and plan.segments:
                steps = plan.segments[0].video
                spans += [(seg, plan, s) for s in steps if isinstance(s, Reencode)]
        if spans:
            with av.open(str(chosen[0].path), options=DEMUX_OPTIONS) as source:  # as outputs
                context = source.streams.video[0].codec_context
                profile_level = context.profile, getattr(context, "level", 0) or 0
        for number, (seg, plan, step) in enumerate(spans):
            info, rate = alone[0].index.video.info, max(Fraction(r) for r in rates)
            capture = _Capture(plan, info, rate, profile_level, _FIRST_SPS_ID - number)
            ahead.jobs.append((span_key(seg.path, step, capture), seg, step, capture))
    except Exception:  # noqa: BLE001 - the engine indexes and plans again, and reports
        ahead.jobs = []
    ahead.start()
    return ahead


class _Capture(SmartCutVideo):
    """Stands in for an output's video while a span is encoded ahead: keeps its packets."""

    encoder = None

    def __init__(self, plan: Plan, info: StreamInfo, rate: Fraction, profile_level, sps_id: int):
        self.plan, self.info, self.rate = plan, info, rate
        self.profile, self.level = profile_level
        self.encoder_sps_id = sps_id - 1  # new_smart_encoder takes the next one
        self.queue = self
        self.packets: list[tuple[int, int, bytes, bool]] = []  # (plan pts, dts, data, key)

    def put(self, step, item) -> None:
        data, pts, dts, keyframe, _ = item
        self.packets.append((pts, dts, data, keyframe))

    def complete(self, step) -> None:
        pass

    def encoded(self, data: bytes) -> bytes:
        return data  # Annex B; the output frames it when it takes the packets


class _Run:
    """What a _Span asks of the segment run it belongs to."""

    def __init__(self, seg: PlanSegment, capture: _Capture):
        self.seg, self.plan = seg, capture.plan
        self.video_index = seg.index.video
        self.output = self
        self.video = capture


def _encode(seg: PlanSegment, step: Reencode, capture: _Capture, stop) -> list:
    decode_span(seg.path, seg.index.video, step, _Span(_Run(seg, capture), step), stop)
    frame_of = {int(pts): k for k, pts in enumerate(step.pts.tolist())}
    return [(frame_of[pts], data, keyframe) for pts, _, data, keyframe in capture.packets]
