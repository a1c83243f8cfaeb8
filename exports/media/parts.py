"""Where to split one long export into parts: chosen from frame indexes alone. Pure.

A part ends where the next begins, at a *cut*: an instant that is exactly the start of a
video frame, so the engine's rule (a frame belongs to [From, To) when it starts before To and
ends after From) puts every frame in exactly one part - none lost, none repeated. Cuts are
made only where that holds to the microsecond (the resolution of the range's datetimes):

- at the first frame of a segment (its wall start is the segment's own start time), and
- at a clean random access point inside a segment (an IDR, or every frame of an intra-only
  codec) whose time from the segment's start is a whole number of microseconds,

and never inside the span of an earlier, overlapping segment. A part that starts at such a
point is stream-copied from its first frame (no re-encoding at the joins).

`PartSplitter` is fed the segments of the range in order (one at a time, so a week of
footage never has to be in memory at once) and picks cuts greedily: each part as long as its
byte budget (estimated from the index's packet sizes plus container overhead with a margin)
and its span allow. A budget no single cut can meet - one GOP larger than the limit - is a
`SplitError` naming the smallest limit that would work there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

import numpy as np

from .errors import ExportError
from .frameindex import Kind, SegmentIndex

# Container overhead: per packet (sample tables, block or chunk headers, index entries; the
# largest of mp4, mkv, avi, flv and asf is below this), per file (headers, codec
# configuration), and a proportional margin for what the estimate cannot know.
PACKET_OVERHEAD = 40
FILE_OVERHEAD = 64 * 1024
MARGIN = 0.03
MICROSECOND = timedelta(microseconds=1)


class SplitError(ExportError):
    """No cut can keep a part within the byte budget."""


@dataclass(frozen=True)
class Budget:
    """What one part may hold: bytes (None: any size) and a span of time (None: any)."""

    max_bytes: int | None = None
    max_span: timedelta | None = None

    def payload(self) -> float:
        """The bytes of packets (overhead included) a part may hold under `max_bytes`."""
        return self.max_bytes * (1 - MARGIN) - FILE_OVERHEAD if self.max_bytes else math.inf


def estimated_file_bytes(packet_bytes: int, packets: int) -> int:
    """What a file of these packets is expected to take, margin included."""
    return int((packet_bytes + packets * PACKET_OVERHEAD + FILE_OVERHEAD) / (1 - MARGIN))


@dataclass
class _Point:
    at: datetime
    total: float  # estimated bytes from the range's start to `at`


@dataclass
class PartSplitter:
    """Greedy cuts over [start, end): feed segments in order of start, then `finish()`."""

    start: datetime
    end: datetime
    budget: Budget
    cuts: list[datetime] = field(default_factory=list)
    _part: _Point | None = None
    _last: _Point | None = None  # the latest usable cut since the part began
    _total: float = 0.0
    _covered_until: datetime | None = None  # end of the segments fed so far

    def __post_init__(self):
        self._part = _Point(self.start, 0.0)

    def feed_span(self, wall_start: datetime, wall_end: datetime) -> None:
        """A segment known only by its span (no index): its start is the one cut it offers,
        its bytes are not counted. Enough to split by time alone."""
        self._offer(wall_start, [], None, wall_end)

    def feed(self, wall_start: datetime, index: SegmentIndex, wall_end: datetime) -> None:
        """A segment with its frame index: every usable cut inside it, bytes counted."""
        times, sizes = _packets(wall_start, index, self.start, self.end)
        cut_offsets = _cut_offsets(index)
        self._offer(wall_start, cut_offsets, (times, sizes), wall_end)

    def finish(self) -> list[datetime]:
        """The cuts, in order (empty: one part is enough)."""
        self._consider(self.end, self._total, final=True)
        return list(self.cuts)

    # -- the greedy walk ------------------------------------------------------------------

    def _offer(self, wall_start, cut_offsets, packets, wall_end) -> None:
        offsets = [timedelta(0)] + list(cut_offsets)
        times, sizes = packets if packets else (np.zeros(0), np.zeros(0))
        running = np.cumsum(sizes, dtype=np.float64)
        for offset in offsets:
            at = wall_start + offset
            if not self.start < at < self.end:
                continue
            if self._covered_until is not None and at < self._covered_until:
                continue  # an earlier segment still shows this instant: not a frame boundary
            before = int(np.searchsorted(times, offset.total_seconds(), side="left"))
            self._consider(at, self._total + (float(running[before - 1]) if before else 0.0))
        if len(running):
            self._total += float(running[-1])
        if self._covered_until is None or wall_end > self._covered_until:
            self._covered_until = wall_end

    def _consider(self, at: datetime, total: float, final: bool = False) -> None:
        while self._too_big(at, total):
            last = self._last
            if last is None or last.at <= self._part.at:
                if self._over_bytes(at, total):
                    raise SplitError(self._gop_message(at, total))
                break  # no cut within the span: this part runs longer (rare: no keyframe)
            self.cuts.append(last.at)
            self._part, self._last = last, None
        if not final:
            self._last = _Point(at, total)

    def _over_bytes(self, at: datetime, total: float) -> bool:
        return total - self._part.total > self.budget.payload()

    def _too_big(self, at: datetime, total: float) -> bool:
        span = self.budget.max_span
        return self._over_bytes(at, total) or (span is not None and at - self._part.at > span)

    def _gop_message(self, at: datetime, total: float) -> str:
        needed = int((total - self._part.total + FILE_OVERHEAD) / (1 - MARGIN)) + 1
        return (
            f"the recording from {self._part.at:%Y-%m-%d %H:%M:%S.%f} UTC to "
            f"{at:%H:%M:%S.%f} cannot be split (no keyframe between) and needs about "
            f"{needed} bytes, more than the limit of {self.budget.max_bytes}; "
            f"ask for a MaxFileSize of at least {needed}"
        )


def _packets(wall_start: datetime, index: SegmentIndex, start: datetime, end: datetime):
    """Seconds from the segment's start (sorted) and estimated bytes (overhead included) of
    its packets within [start, end)."""
    video = index.video
    if video is None or not len(video.pts):
        return np.zeros(0), np.zeros(0)
    origin = int(video.pts.min()) * float(video.info.time_base)
    low = (start - wall_start).total_seconds()
    high = (end - wall_start).total_seconds()
    times, sizes = [], []
    for stream in index.streams():
        base = float(stream.info.time_base)
        offset = stream.pts.astype(np.float64) * base - origin
        ends = offset + np.maximum(stream.duration, 0) * base
        keep = (offset < high) & (ends > low)
        times.append(offset[keep])
        sizes.append(stream.size[keep].astype(np.float64) + PACKET_OVERHEAD)
    offsets = np.concatenate(times)
    order = np.argsort(offsets, kind="stable")
    return offsets[order], np.concatenate(sizes)[order]


def _cut_offsets(index: SegmentIndex) -> list[timedelta]:
    """Offsets from the segment's start of its clean access points that lie exactly on a
    microsecond (later than its first frame, which is offered anyway)."""
    video = index.video
    if video is None or len(video.pts) < 2:
        return []
    pts0 = int(video.pts.min())
    tb = Fraction(video.info.time_base)
    idr = np.flatnonzero(video.kind == Kind.IDR)
    steps = video.pts[idr].astype(object) - pts0  # Python ints: no overflow on long files
    offsets = []
    for step in sorted(set(steps)):
        micros = step * tb * 1_000_000
        if step > 0 and micros.denominator == 1:
            offsets.append(timedelta(microseconds=int(micros)))
    return offsets
