"""Geometry of the cameras page's timeline: recorded intervals as percentages of a window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Clickable slots of the timeline (links to the export form) when JavaScript is off.
SLOT_MINUTES = 15
TICK_HOURS = 3


@dataclass(frozen=True)
class Span:
    """A part of the window, placed in percent of its width."""

    start: datetime
    end: datetime
    left: float
    width: float

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Tick:
    left: float
    label: str


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    recorded: list[Span]
    gaps: list[Span]
    ticks: list[Tick]
    slots: list[Span]
    now_left: float | None  # where "now" falls when the window reaches into the future

    @property
    def recorded_seconds(self) -> float:
        return sum(span.seconds for span in self.recorded)


def day_window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight (23 or 25 hours on DST days), as UTC-aware."""
    start = datetime.combine(day, time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))


def last_day_window(now: datetime) -> tuple[datetime, datetime]:
    """The 24 hours up to `now`, with the end rounded up to the next minute."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - timedelta(hours=24), end


def build_timeline(
    intervals: list[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    now: datetime,
    first_recording: datetime | None = None,
    live_edge: timedelta = timedelta(0),
) -> Timeline:
    """Place recorded `intervals` (sorted, UTC) and the gaps between them inside [start, end).

    A gap is time the camera should have recorded and did not: not the time before its
    `first_recording` (it was not recording yet), and not the last `live_edge` before `now`
    when the recording reaches into it (the segment being written is not indexed yet).
    """
    total = (end - start).total_seconds()

    def span(a: datetime, b: datetime) -> Span:
        left = (a - start).total_seconds() / total * 100
        width = (b - a).total_seconds() / total * 100
        return Span(a, b, round(left, 3), round(width, 3))

    recorded = []
    for a, b in intervals:
        a, b = max(a, start), min(b, end)
        if b > a:
            recorded.append(span(a, b))

    # Gaps are only meaningful up to now: the future is not "missing".
    horizon = min(end, now)
    if recorded and horizon - recorded[-1].end <= live_edge:
        horizon = min(horizon, recorded[-1].end)
    if first_recording is None:
        first_recording = recorded[0].start if recorded else horizon
    gaps, cursor = [], max(start, first_recording)
    for piece in recorded:
        if piece.start > cursor and cursor < horizon:
            gaps.append(span(cursor, min(piece.start, horizon)))
        cursor = max(cursor, piece.end)
    if cursor < horizon:
        gaps.append(span(cursor, horizon))

    slots, cursor = [], start
    step = timedelta(minutes=SLOT_MINUTES)
    while cursor < end:
        slots.append(span(cursor, min(cursor + step, end)))
        cursor += step

    now_left = span(start, now).width if start <= now < end else None
    return Timeline(start, end, recorded, gaps, _ticks(start, end, zone, span), slots, now_left)


def _ticks(start, end, zone, span) -> list[Tick]:
    """A label at every TICK_HOURS-th local hour inside the window."""
    local = start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    ticks = []
    utc = ZoneInfo("UTC")
    # Step in UTC hours so DST days neither repeat nor skip a tick.
    cursor = local.astimezone(utc)
    while cursor <= end:
        here = cursor.astimezone(zone)
        if cursor >= start and here.minute == 0 and here.hour % TICK_HOURS == 0:
            ticks.append(Tick(span(start, cursor).width, here.strftime("%H:%M")))
        cursor += timedelta(hours=1)
    return ticks
