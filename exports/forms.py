"""The one validation of an export request, shared by the JSON API and the pages."""

import re
from datetime import UTC, datetime, timedelta

from django import forms
from django.conf import settings

from exports.media.overlay import POSITIONS, ZONES
from exports.option_fields import API_OPTION_NAMES, ChoiceTextField, SpeedField, StrictBooleanField
from exports.tasks import exportable_camera

# The smallest MaxFileSize: smaller parts would be mostly container overhead, and one GOP of
# ordinary footage may not fit in them (the task would fail).
MIN_MAX_FILE_SIZE = 1024 * 1024

EXPORT_FORMATS = ("mp4", "avi", "flv", "mov", "asf", "mkv")
STILL_FORMATS = ("jpg", "png")  # a still image of the frame on screen at From
ALL_FORMATS = EXPORT_FORMATS + STILL_FORMATS

_PSIM_TIME = re.compile(
    r"""^\s*
    (?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})
    [Tt\x20]
    (?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?
    \s*(?P<zone>[Zz]|(?:UTC|GMT)|[+-]\d{2}(?::?\d{2})?)?
    \s*$""",
    re.VERBOSE,
)


# Times outside these years are refused: no archive is older than the epoch, and staying
# far from year 1 and 9999 keeps every later step (offsets, ± 24 h, day windows) from
# overflowing Python's datetime.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def within_calendar(moment: datetime, text=None) -> datetime:
    """`moment` if it lies in [EARLIEST, LATEST), else ValueError naming the bounds."""
    if not EARLIEST <= moment < LATEST:
        shown = _shorten(text) if isinstance(text, str) else f"{moment:%Y-%m-%d}"
        raise ValueError(
            f"{shown!r} is outside the years {EARLIEST.year}-{LATEST.year - 1} this service handles"
        )
    return moment


def parse_psim_time(value) -> datetime:
    """A PSIM time as an aware UTC datetime; ValueError with a readable message otherwise.

    Lenient as PSIM's own examples need: fractional seconds of any length (beyond
    microseconds they are truncated), a trailing `Z`, an offset such as `+03:00` (converted to
    UTC), or no zone at all (UTC). Seconds may be left out.
    """
    if isinstance(value, datetime):
        try:
            moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value:%Y-%m-%d} is outside the calendar") from None
        return within_calendar(moment)
    if not isinstance(value, str):
        raise ValueError("must be a string such as 2022-06-27T15:10:00Z")
    match = _PSIM_TIME.match(value)
    if not match:
        raise ValueError(f"{_shorten(value)!r} is not a time like 2022-06-27T15:10:00Z")
    parts = match.groupdict()
    fraction = (parts["fraction"] or "0")[:6].ljust(6, "0")
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"]),
            int(parts["minute"]),
            int(parts["second"] or 0),
            int(fraction),
            tzinfo=UTC,
        )
    except ValueError:
        raise ValueError(f"{_shorten(value)!r} is not a date and time that exists") from None
    try:
        moment -= _zone_offset(parts["zone"])
    except OverflowError:  # year 1 with a positive offset, 9999 with a negative one
        moment = datetime.min.replace(tzinfo=UTC)
    return within_calendar(moment, value)


def _zone_offset(zone: str | None) -> timedelta:
    if not zone or zone.upper() in ("Z", "UTC", "GMT"):
        return timedelta(0)
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"time zone offset {zone!r} does not exist")
    return sign * timedelta(hours=hours, minutes=minutes)


def format_psim_time(moment: datetime | None) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS.fffZ` in UTC, the spelling of every time the API answers."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _shorten(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


class PsimTimeField(forms.Field):
    """A time as PSIM writes it; the pages' datetime-local inputs parse the same way."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_psim_time(value)
        except ValueError as error:
            raise forms.ValidationError(str(error), code="invalid") from None


class CameraIdField(forms.Field):
    """The CameraId: a string, or a JSON number that is taken as its decimal spelling."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise forms.ValidationError(
                'must be a string such as "1" (or a whole number)', code="invalid"
            )
        value = str(value).strip()
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800" from JSON
            raise forms.ValidationError("must be valid Unicode text", code="invalid") from None
        if any(ord(char) < 32 for char in value):
            raise forms.ValidationError("must not contain control characters", code="invalid")
        if len(value) > 64:
            raise forms.ValidationError("is too long to be a camera id", code="invalid")
        return value


class FormatField(forms.Field):
    def to_python(self, value):
        if value in self.empty_values:
            return None
        if not isinstance(value, str):
            raise forms.ValidationError(
                f"must be a string, one of {', '.join(ALL_FORMATS)}", code="invalid"
            )
        fmt = value.strip().lower().lstrip(".")
        fmt = "jpg" if fmt == "jpeg" else fmt
        if fmt not in ALL_FORMATS:
            raise forms.ValidationError(
                f"{_shorten(value)!r} is not a known format; choose one of "
                f"{', '.join(ALL_FORMATS)}",
                code="invalid",
            )
        return fmt


class ByteCountField(forms.Field):
    """A number of bytes: a whole JSON number (or its decimal spelling), at least `minimum`."""

    def __init__(self, *, minimum: int, **kwargs):
        super().__init__(**kwargs)
        self.minimum = minimum

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 19:
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise forms.ValidationError("must be a whole number of bytes", code="invalid")
        if value < self.minimum:
            raise forms.ValidationError(
                f"{value} is below the smallest limit, {self.minimum} bytes (1 MiB)", code="invalid"
            )
        if value >= 1 << 62:
            raise forms.ValidationError(f"{value} is too large", code="invalid")
        return value



# -- case data (Name, Comment) and legal hold (Keep) ----------------------------------------


class CaseTextField(forms.Field):
    """Free text of a case: a string (or null), at most `max_chars` characters once
    surrounding spaces are trimmed; line breaks only where `multiline`."""

    def __init__(self, *, max_chars: int, multiline: bool = False, **kwargs):
        self.max_chars, self.multiline = max_chars, multiline
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        if value in self.empty_values:
            return ""
        if not isinstance(value, str):
            raise forms.ValidationError("must be a string", code="invalid")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800" from JSON
            raise forms.ValidationError("must be valid Unicode text", code="invalid") from None
        value = value.strip()
        allowed = "\n\r\t" if self.multiline else ""
        if any(ord(char) < 32 and char not in allowed for char in value) or "\x7f" in value:
            what = "control characters" if self.multiline else "line breaks or control characters"
            raise forms.ValidationError(f"must not contain {what}", code="invalid")
        if len(value) > self.max_chars:
            raise forms.ValidationError(
                f"is {len(value)} characters long; at most {self.max_chars} are allowed",
                code="invalid",
            )
        return value


class KeepField(forms.Field):
    """The legal hold: JSON true or false (null or absent: false). Needs the permission
    exports.keep_exporttask when true (checked by the form, which knows the user)."""

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        if value in (None, ""):
            return False
        if not isinstance(value, bool):
            raise forms.ValidationError("must be true or false", code="invalid")
        return value


class CaseDataFormMixin(forms.Form):
    """Name, Comment and Keep on an export request, shared by the API and the export page."""

    name = CaseTextField(label="Name", max_chars=200)
    comment = CaseTextField(label="Comment", max_chars=2000, multiline=True)
    keep = KeepField(label="Keep")

    def clean_keep(self):
        from exports.tasks import KEEP_PERMISSION, may_keep

        keep = self.cleaned_data.get("keep")
        if keep and not may_keep(self.user):
            raise forms.ValidationError(
                f"needs the permission {KEEP_PERMISSION} (legal hold); ask an administrator",
                code="forbidden",
            )
        return keep

    @property
    def keep_forbidden(self) -> bool:
        """True when the only thing wrong is a hold without the permission (API: 403)."""
        return self.has_error("keep", code="forbidden") and len(self.errors) == 1

    def case_data(self) -> dict:
        return {key: self.cleaned_data.get(key) for key in ("name", "comment", "keep")}


class ExportRequestForm(CaseDataFormMixin, forms.Form):
    """camera + [start, end) + format; `cleaned_data` holds a Camera the user may export.

    `end` may be left empty: the service resolves it to the last recorded frame.
    """

    camera = CameraIdField(
        label="Camera", error_messages={"required": "is required (the camera's id)"}
    )
    start = PsimTimeField(
        label="From", error_messages={"required": "is required, e.g. 2022-06-27T15:10:00Z"}
    )
    end = PsimTimeField(label="To", required=False)
    format = FormatField(label="Format", required=False)
    max_file_size = ByteCountField(
        label="Max file size", required=False, minimum=MIN_MAX_FILE_SIZE
    )

    # Picture options (exports/option_fields.py); absent: the plain export.
    overlay = StrictBooleanField(label="Overlay")
    overlay_position = ChoiceTextField(POSITIONS, label="Overlay position")
    overlay_zone = ChoiceTextField(ZONES, label="Overlay time zone")
    overlay_ms = StrictBooleanField(label="Overlay milliseconds")
    speed = SpeedField(label="Speed", required=False)

    field_order = ["camera", "start", "end", "format"]  # then the case data

    # The names the JSON API uses for the fields, for its error messages.
    API_NAMES = {
        "camera": "CameraId", "start": "From", "end": "To", "format": "Format",
        "name": "Name", "comment": "Comment", "keep": "Keep",
        "max_file_size": "MaxFileSize",
        **API_OPTION_NAMES,
    }

    def __init__(self, data=None, user=None, **kwargs):
        super().__init__(data, **kwargs)
        self.user = user

    def clean_camera(self):
        camera_id = self.cleaned_data.get("camera")
        if camera_id is None:
            return None
        camera = exportable_camera(self.user, camera_id)
        if camera is None:
            # Same answer for "does not exist" and "not yours": don't reveal which.
            raise forms.ValidationError(
                f"{_shorten(camera_id)!r} is not a camera you may export", code="not_found"
            )
        return camera

    def clean_format(self):
        return self.cleaned_data.get("format") or settings.PSIMEXPORT_CONTAINER_FORMAT

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if data.get("format") in STILL_FORMATS:
            # A still is the frame on screen at From; a To (PSIM clients always send one) is
            # ignored rather than refused.
            data["end"] = end = None
            if data.get("speed"):
                self.add_error("speed", "does not apply to a still (Format jpg or png)")
            if data.get("max_file_size"):
                self.add_error("max_file_size", "does not apply to a still (Format jpg or png)")
        if start is not None and end is not None:
            if end <= start:
                self.add_error("end", "must be after From")
            elif end - start > timedelta(hours=settings.PSIMEXPORT_MAX_RANGE_HOURS):
                self.add_error(
                    "end",
                    f"the range is longer than the {settings.PSIMEXPORT_MAX_RANGE_HOURS} hours "
                    "one export may cover; split it into several tasks",
                )
        return data

    @property
    def camera_not_found(self) -> bool:
        """True when the only thing wrong is the camera (the API answers 404 then)."""
        return self.has_error("camera", code="not_found") and len(self.errors) == 1

    def error_message(self, api_names: bool = True) -> str:
        """All errors in one readable line, named as the API (or the page) names the fields."""
        parts = []
        for field, errors in self.errors.items():
            if field == "__all__":
                parts.extend(errors)
                continue
            name = self.API_NAMES.get(field, field) if api_names else self.fields[field].label
            parts.extend(f"{name} {message}" for message in errors)
        return "; ".join(parts)
