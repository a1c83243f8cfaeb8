"""Small formatting filters of the web pages."""

from datetime import UTC, datetime

from django import template

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
