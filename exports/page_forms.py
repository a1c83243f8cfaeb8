"""Forms only the web pages use; export validation itself is ExportRequestForm's (exports/forms.py)."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings

from exports.forms import EARLIEST, LATEST, within_calendar
from exports.media.options import MAX_SPEED, MIN_SPEED
from exports.media.overlay import POSITIONS
from exports.models import Camera, ExportTask, UserPreference
from exports.option_fields import API_OPTION_NAMES

# What the time fields accept (seconds optional, "T" or a space) and what we fill them with.
LOCAL_INPUT_FORMATS = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
LOCAL_VALUE_FORMAT = "%Y-%m-%d %H:%M:%S"
# A plain text field, not datetime-local: that one shows AM/PM in some browser locales, while
# every other time in the app is 24-hour. The pattern marks a typo (novalidate: the server
# says what is wrong), the placeholder shows the format.
LOCAL_INPUT_PATTERN = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
LOCAL_INPUT_HINT = "YYYY-MM-DD HH:MM:SS"


def user_zone(user) -> ZoneInfo:
    """The zone the pages show and read times in for this user (default: TIME_ZONE)."""
    name = getattr(user, "_page_zone_name", None)
    if name is None:
        name = (
            UserPreference.objects.filter(user=user).values_list("time_zone", flat=True).first()
            or settings.TIME_ZONE
        )
        user._page_zone_name = name
    try:
        return ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def to_local_input(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime(LOCAL_VALUE_FORMAT)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@cache
def _zone_choices():
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class PreferencesForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone", help_text="Times on these pages are shown and entered in this zone."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = _zone_choices()

    def save(self, user):
        UserPreference.objects.update_or_create(
            user=user, defaults={"time_zone": self.cleaned_data["time_zone"]}
        )
        user._page_zone_name = self.cleaned_data["time_zone"]


class LocalDateTimeField(forms.DateTimeField):
    """A wall-clock time with seconds in the user's zone, cleaned to an aware UTC datetime."""

    widget = forms.DateTimeInput(
        attrs={
            "type": "text", "pattern": LOCAL_INPUT_PATTERN, "placeholder": LOCAL_INPUT_HINT,
            "autocomplete": "off", "spellcheck": "false", "size": "19",
        },
        format=LOCAL_VALUE_FORMAT,
    )
    input_formats = LOCAL_INPUT_FORMATS

    def __init__(self, *args, zone: ZoneInfo | None = None, **kwargs):
        self.zone = zone or ZoneInfo("UTC")
        super().__init__(*args, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, datetime):
            return to_local_input(value, self.zone) if value.tzinfo else value.strftime(LOCAL_VALUE_FORMAT)
        return value

    def to_python(self, value):
        try:
            moment = self._to_utc(value)
        except OverflowError:  # year 1 east of UTC, year 9999 west of it
            moment = datetime.min.replace(tzinfo=UTC)
        if moment is None:
            return None
        try:
            return within_calendar(moment, value if isinstance(value, str) else None)
        except ValueError as error:
            raise forms.ValidationError(_sentence(str(error)) + ".", code="out_of_range") from None

    def _to_utc(self, value):
        if isinstance(value, str) and value.strip():
            value = value.strip()
            # An explicit instant (e.g. "...Z" from a timeline link) is taken as is.
            if value.endswith("Z") or value[-6:-5] in "+-" and value[-3:-2] == ":":
                try:
                    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
                except ValueError:
                    pass
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=self.zone).astimezone(UTC)
        naive = self._parse_naive(str(value).strip())
        local = naive.replace(tzinfo=self.zone)
        # A wall time that does not exist (DST spring forward) does not survive a round trip.
        if local.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != naive:
            raise forms.ValidationError(
                f"{naive:%Y-%m-%d %H:%M:%S} does not exist in {self.zone.key} (clocks jump forward).",
                code="nonexistent",
            )
        return local.astimezone(UTC)

    def _parse_naive(self, text: str) -> datetime:
        # Fractions of a second are accepted (and kept) like the API's times.
        for fmt in self.input_formats:
            for candidate in (fmt, fmt + ".%f"):
                try:
                    return datetime.strptime(text, candidate)
                except ValueError:
                    continue
        raise forms.ValidationError(
            "Enter a valid date/time such as 2026-11-20 10:00:13.", code="invalid"
        )


class TaskFilterForm(forms.Form):
    """Filters of the task history; every field optional, bad values are ignored."""

    camera = forms.ModelChoiceField(
        queryset=Camera.objects.none(), required=False, to_field_name="camera_id",
        empty_label="All cameras",
    )
    state = forms.ChoiceField(required=False)
    day = forms.DateField(
        required=False, label="Day", widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(
        required=False, max_length=200, label="Case",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Case name or comment"}),
    )
    kept = forms.BooleanField(required=False, label="Legal hold only")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["camera"].queryset = Camera.objects.restrict(user)
        self.fields["state"].choices = [("", "All states"), *ExportTask.State.choices]

    def clean_day(self):
        day = self.cleaned_data.get("day")
        if day is not None and not page_day_in_range(day):
            raise forms.ValidationError("No exports that long ago or that far ahead.")
        return day


def page_day_in_range(day: date) -> bool:
    """A day whose local window (in any zone, ± one day) stays inside the calendar bounds."""
    return EARLIEST.date() < day < (LATEST.date() - timedelta(days=2))


def parse_page_day(value) -> date | None:
    """?day=YYYY-MM-DD of the pages; None when missing, malformed or out of range."""
    try:
        day = date.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None
    return day if day is not None and page_day_in_range(day) else None


class ExportPageForm(forms.Form):
    """The export form: one or several cameras, a range in the user's zone, a format.

    Each camera's request is validated by ExportRequestForm, the class the JSON API uses, and
    its errors are shown next to the matching field here.
    """

    QUICK_MINUTES = (5, 15, 60)
    AROUND_CHOICES = [(1, "± 1 min"), (2, "± 2 min"), (5, "± 5 min"), (10, "± 10 min"),
                      (15, "± 15 min"), (30, "± 30 min")]

    camera = forms.MultipleChoiceField(
        label="Cameras", widget=forms.CheckboxSelectMultiple,
        help_text="Pick several to export the same range from each, as one batch.",
        error_messages={
            "required": "Choose at least one camera.",
            # The API's wording, so both say the same (and neither tells "absent" from "not yours").
            "invalid_choice": "'%(value)s' is not a camera you may export.",
        },
    )
    start = LocalDateTimeField(label="From", error_messages={"required": "Enter the start."})
    end = LocalDateTimeField(
        label="To", required=False, help_text="Leave empty for “up to the last recording”."
    )
    format = forms.ChoiceField(
        label="Format", required=False,
        error_messages={"invalid_choice": "'%(value)s' is not a known format."},
    )
    max_file_size = forms.DecimalField(
        label="Max file size (MB)", required=False, min_value=0, max_digits=12, decimal_places=3,
        help_text="Split the export into parts no larger than this (1 MB = 1,000,000 bytes; "
        "at least 1.05 MB). Empty: one file (parts of at most 24 hours for longer ranges).",
    )
    mosaic = forms.ChoiceField(
        label="Mosaic", required=False,
        choices=[("", "No mosaic"), ("2x2", "2×2 grid (up to 4 cameras)"),
                 ("3x3", "3×3 grid (up to 9 cameras)")],
        help_text="With several cameras: also one video of them all side by side on one clock, "
        "each tile labelled (re-encoded; at most 1 hour).",
    )
    around = forms.TypedChoiceField(
        label="Around From", choices=AROUND_CHOICES, coerce=int, required=False, initial=5
    )
    # Case data; each export's ExportRequestForm checks them as the API does.
    case_name = forms.CharField(
        label="Case name", required=False, help_text="Case or incident, up to 200 characters."
    )
    case_comment = forms.CharField(
        label="Comment", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Up to 2,000 characters.",
    )
    keep = forms.BooleanField(
        label="Legal hold: keep this export until released", required=False,
        help_text="Exempt from the automatic deletion after the retention period.",
    )
    CASE_FIELDS = {"name": "case_name", "comment": "case_comment", "keep": "keep"}
    # Picture options (the API's Overlay…, Speed); ExportRequestForm checks them.
    overlay = forms.BooleanField(label="Burn in camera name and time", required=False)
    overlay_position = forms.ChoiceField(
        label="Corner", required=False, initial="top-left",
        choices=[(p, p.replace("-", " ")) for p in POSITIONS],
    )
    overlay_zone = forms.ChoiceField(
        label="Time in", required=False, initial="camera",
        choices=[("camera", "the camera's time zone"), ("utc", "UTC")],
    )
    overlay_ms = forms.BooleanField(label="with milliseconds", required=False)
    speed = forms.IntegerField(
        label="Timelapse speed", required=False, min_value=MIN_SPEED, max_value=MAX_SPEED,
        help_text=f"{MIN_SPEED}–{MAX_SPEED}× faster (one frame in N, no sound); empty: real time.",
    )

    def __init__(self, *args, user=None, zone: ZoneInfo | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        from exports.forms import EXPORT_FORMATS, STILL_FORMATS

        self.user = user
        self.zone = zone or ZoneInfo("UTC")
        self.cameras = list(Camera.objects.restrict(user))
        self.fields["camera"].choices = [(c.camera_id, c.display_name) for c in self.cameras]
        self.fields["format"].choices = [(f, f) for f in EXPORT_FORMATS] + [
            (f, f"{f} (still image at From)") for f in STILL_FORMATS
        ]
        self.fields["format"].initial = settings.PSIMEXPORT_CONTAINER_FORMAT
        for name in ("start", "end"):
            self.fields[name].zone = self.zone
        from exports.tasks import may_keep

        if not may_keep(user):  # the control is not offered (the API would say 403)
            del self.fields["keep"]
        self.requests = []  # cleaned ExportRequestForm data, one per camera

    def clean(self):
        from exports.forms import ExportRequestForm

        data = super().clean()
        if "keep" not in self.fields and self.data.get("keep"):
            self.add_error(None, "You may not set a legal hold (it needs the permission exports.keep_exporttask).")
        if self.errors:
            return data
        if data.get("mosaic"):
            self._check_mosaic(data)
        for camera_id in data.get("camera", []):
            request_form = ExportRequestForm(
                {"camera": camera_id, "start": data["start"], "end": data.get("end"),
                 "format": data.get("format"), "max_file_size": _bytes(data.get("max_file_size")),
                 **{key: data.get(mine) for key, mine in self.CASE_FIELDS.items()},
                 **{name: data.get(name) for name in API_OPTION_NAMES if name in self.fields}},
                user=self.user,
            )
            if request_form.is_valid():
                self.requests.append({**request_form.cleaned_data, "case": request_form.case_data()})
                continue
            many = len(data["camera"]) > 1
            for field, errors in request_form.errors.items():
                target = self.CASE_FIELDS.get(field, field)
                target = target if target in self.fields else None
                for message in errors:
                    if field in self.CASE_FIELDS and target:  # "Case name is 201 characters…"
                        message = f"{self.fields[target].label} {message}"
                    if target == "camera" or (many and target is None):
                        message = f"{camera_id}: {message}"
                    self.add_error(target, _sentence(message))
        return data


    def _check_mosaic(self, data) -> None:
        from exports import groups, tasks

        if len(data.get("camera", [])) < 2:
            self.add_error("mosaic", "Choose at least two cameras for a mosaic.")
            return
        end = data.get("end")  # an open end is checked once resolved, when the task is made
        length = end - data["start"] if end else timedelta(0)
        try:
            groups.check_mosaic(data["mosaic"], len(data["camera"]), length)
        except tasks.TaskRefused as refused:
            self.add_error("mosaic", _sentence(refused.message) + ".")


def _bytes(megabytes):
    """The form's MB (10^6 bytes, as upload limits are written) as whole bytes."""
    return None if megabytes is None else int(megabytes * 1_000_000)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] if message else message
