"""Admin for cameras and segments (cameras.py), tasks, audit and tokens (tasks.py), and the
job queues (queues.py, superusers only)."""

from exports.admin import cameras, queues, tasks  # noqa: F401
