"""What /healthz reports: database, Redis, live workers, maintenance, disk.

"error" (503) when the database or Redis is down; "degraded" (200) when no worker is alive,
maintenance has not run for three minutes (expiry and stuck-task recovery have stopped), or
disk is low.
"""

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

from exports import tasks

log = logging.getLogger(__name__)

MAINTENANCE_LATE_SECONDS = 180


def health() -> tuple[dict, bool]:
    """The /healthz body and whether the service is up (False → 503)."""
    started = time.monotonic()
    checks = {"Database": _database()}
    checks.update(_queue())
    checks.update(_disk())
    healthy = checks["Database"] == "ok" and checks["Redis"] == "ok"
    late = checks["MaintenanceAgeSeconds"] is None or (
        checks["MaintenanceAgeSeconds"] > MAINTENANCE_LATE_SECONDS
    )
    checks["Maintenance"] = "late" if late else "ok"
    if not healthy:
        checks["Status"] = "error"
    elif not checks["Workers"] or late or checks["Disk"] != "ok":
        checks["Status"] = "degraded"
    else:
        checks["Status"] = "ok"
    checks["Seconds"] = round(time.monotonic() - started, 4)
    return checks, healthy


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as failure:  # noqa: BLE001 — any failure is the answer
        return f"error: {failure}"


def _queue() -> dict:
    from exports import jobs, maintenance

    answer = {
        "Workers": None,
        "QueuedJobs": None,
        "MaintenanceLastRun": None,
        "MaintenanceAgeSeconds": None,
    }
    try:
        queue = jobs.get_queue()
        queue.connection.ping()
        answer["Redis"] = "ok"
        answer["Workers"] = live_workers(queue.connection)
        answer["QueuedJobs"] = queue.count
        last = maintenance.last_run_at()
    except Exception as failure:  # noqa: BLE001
        answer["Redis"] = f"error: {failure}"
        return answer
    if last is not None:
        from exports.forms import format_psim_time

        answer["MaintenanceLastRun"] = format_psim_time(datetime.fromtimestamp(last, UTC))
        answer["MaintenanceAgeSeconds"] = round(max(0.0, time.time() - last), 1)
    return answer


def live_workers(conn) -> int:
    """Workers registered in Redis whose last heartbeat is recent. A worker killed outright
    (SIGKILL) cannot unregister, and rq keeps its registration for a minute or more after its
    last heartbeat; psimexport's workers heartbeat every few seconds (exports/worker.py), so
    an old heartbeat means a dead worker. (Workers' clocks are assumed to be roughly right.)"""
    from rq import Worker

    from exports.worker import HEARTBEAT_STALE_SECONDS

    alive_since = datetime.now(UTC) - timedelta(seconds=HEARTBEAT_STALE_SECONDS)
    return sum(
        1
        for worker in Worker.all(connection=conn)
        if worker.last_heartbeat is not None and worker.last_heartbeat >= alive_since
    )


def _disk() -> dict:
    try:
        free = tasks.free_bytes()
    except OSError as failure:
        log.warning("healthz: cannot stat exports dir: %s", failure)
        return {"DiskFreeBytes": None, "Disk": "low"}
    ok = free >= settings.PSIMEXPORT_MIN_FREE_BYTES
    return {"DiskFreeBytes": free, "Disk": "ok" if ok else "low"}
