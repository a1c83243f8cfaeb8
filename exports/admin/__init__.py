"""Admin for cameras and segments (cameras.py), tasks, audit and tokens (tasks.py), failed
sign-ins (logins.py) and the job queues (queues.py, superusers only)."""

from exports.admin import cameras, logins, queues, tasks  # noqa: F401
