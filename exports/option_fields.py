"""Form fields of the export options (`Overlay…`, `Speed`), strict as JSON types go: a
boolean is a JSON true/false, a speed a whole number; anything else is a 400 naming the field."""

from django import forms

from exports.media.options import MAX_SPEED, MIN_SPEED


class StrictBooleanField(forms.Field):
    """true / false (absent or null: false). Not "yes" or 1: a typo must not pass as true."""

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        if value is None or value == "":
            return False
        if not isinstance(value, bool):
            raise forms.ValidationError("must be true or false", code="invalid")
        return value

    def validate(self, value):
        pass  # False is a value here, not a missing one


class ChoiceTextField(forms.Field):
    """One of a few words, case-insensitive (absent or null: the first)."""

    def __init__(self, choices, **kwargs):
        self.words = tuple(choices)
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        if value in self.empty_values:
            return self.words[0]
        if not isinstance(value, str) or value.strip().lower() not in self.words:
            raise forms.ValidationError(f"must be one of {', '.join(self.words)}", code="invalid")
        return value.strip().lower()


class SpeedField(forms.Field):
    """A timelapse speed: a whole number MIN_SPEED-MAX_SPEED (absent or null: real time)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())  # the page's number input
        if isinstance(value, bool) or not isinstance(value, int):
            raise forms.ValidationError(
                f"must be a whole number from {MIN_SPEED} to {MAX_SPEED}", code="invalid"
            )
        if not MIN_SPEED <= value <= MAX_SPEED:
            raise forms.ValidationError(
                f"{value} is not from {MIN_SPEED} to {MAX_SPEED}", code="invalid"
            )
        return value


# JSON field names (lower case, as the API folds them) -> form field names.
API_OPTION_FIELDS = {
    "overlay": "overlay",
    "overlayposition": "overlay_position",
    "overlayzone": "overlay_zone",
    "overlaymilliseconds": "overlay_ms",
    "speed": "speed",
}
API_OPTION_NAMES = {
    "overlay": "Overlay",
    "overlay_position": "OverlayPosition",
    "overlay_zone": "OverlayZone",
    "overlay_ms": "OverlayMilliseconds",
    "speed": "Speed",
}


def task_options(cleaned: dict) -> dict:
    """ExportTask field values of the options in a cleaned request."""
    return {name: cleaned[name] for name in API_OPTION_NAMES if name in cleaned}


def picture_options(task):
    """The engine's PictureOptions for a task, or None for a plain export (engine.export)."""
    from exports.media.options import PictureOptions
    from exports.media.overlay import OverlaySpec
    from exports.media.stills import FORMATS as STILL_FORMATS

    if not (task.overlay or task.speed or task.format in STILL_FORMATS):
        return None
    camera = task.camera
    zone = camera.timezone or None
    spec = None
    if task.overlay:
        spec = OverlaySpec(
            name=camera.display_name,
            position=task.overlay_position or "top-left",
            zone=zone if task.overlay_zone != "utc" else None,
            milliseconds=task.overlay_ms,
        )
    return PictureOptions(
        camera_id=camera.camera_id, camera_name=camera.display_name, zone=zone,
        overlay=spec, speed=task.speed or 1,
    )
