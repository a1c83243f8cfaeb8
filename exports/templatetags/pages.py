"""Small formatting filters of the web pages."""

from datetime import UTC, datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def isoz(moment: datetime | None) -> str:
    """An instant as the API writes it in URLs: 2026-11-20T10:00:13Z (UTC)."""
    if not moment:
        return ""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


@register.filter
def utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


@register.filter
def epoch_ms(moment: datetime | None) -> int | str:
    return round(moment.timestamp() * 1000) if moment else ""


@register.filter
def pct(value: float) -> str:
    """A CSS percentage that ignores the locale's decimal separator."""
    return f"{float(value):.3f}%"


@register.filter
def seconds_text(seconds: float | None) -> str:
    """12 s, 4 min 05 s, 3 h 02 min."""
    if seconds is None:
        return ""
    seconds = round(float(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@register.filter
def words(value: str) -> str:
    """stream_copy -> stream copy."""
    return str(value or "").replace("_", " ")


def _is_utc(zone) -> bool:
    return getattr(zone, "key", str(zone)) in ("UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu")


def _local(moment: datetime) -> datetime:
    return timezone.localtime(moment)


@register.filter
def local_utc(moment: datetime | None) -> str:
    """"2026-11-20 11:00:13 Europe/Berlin = 2026-11-20 10:00:13 UTC", or once when the page's
    zone is UTC."""
    if not moment:
        return ""
    zone = timezone.get_current_timezone()
    if _is_utc(zone):
        return utc(moment)
    return f"{_local(moment):%Y-%m-%d %H:%M:%S} {zone.key} = {utc(moment)}"


@register.simple_tag
def utc_differs() -> bool:
    """Whether the page's zone is not UTC (then a UTC equivalent is worth showing)."""
    return not _is_utc(timezone.get_current_timezone())


@register.filter
def span_text(start: datetime | None, end: datetime | None) -> str:
    """A stretch of time that reads forwards: the date is repeated when the end is on another
    local day, "2026-11-30 16:30:00 – 2026-12-01 16:15:00", else "2026-12-01 10:00:04 – 10:00:06"."""
    if not start or not end:
        return ""
    first, last = _local(start), _local(end)
    tail = f"{last:%H:%M:%S}" if first.date() == last.date() else f"{last:%Y-%m-%d %H:%M:%S}"
    return f"{first:%Y-%m-%d %H:%M:%S} – {tail}"


@register.filter
def shown_percents(task) -> int:
    """The progress a page shows: what the API's Percents says (exports.tasks)."""
    from exports.tasks import reported_percents

    return reported_percents(task)


@register.filter
def public_error(task) -> str:
    """A task's error as the API answers it: no absolute server paths."""
    from exports.tasks import public_error_message  # tasks imports models; filters load early

    return public_error_message(task)
