"""Admin for cameras and segments (cameras.py) and for tasks, audit and tokens (tasks.py)."""

from exports.admin import cameras, tasks  # noqa: F401
