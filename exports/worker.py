"""The rq worker class psimexport runs (settings.RQ["WORKER_CLASS"]).

- serves the `maintenance` queue before all others, so housekeeping that frees stuck
  exports never waits behind them;
- re-arms the maintenance schedule when it starts and every minute after, so a Redis that
  was flushed or restarted empty gets it back;
- its work horse and scheduler processes die with it (they would otherwise live on as
  orphans, the scheduler holding its lock);
- it heartbeats every few seconds, idle or busy, so /healthz can tell a worker that was
  killed outright (SIGKILL, the OOM killer) from a live one within half a minute: its
  registration in Redis outlives it by a minute or more.
"""

import rq
from rq.defaults import DEFAULT_WORKER_TTL

from psimexport.lifeline import forks_die_with_this_process

MAINTENANCE_QUEUE = "maintenance"
# An idle worker heartbeats every WORKER_TTL - 15 s (it waits that long for a job), a busy
# one every JOB_MONITORING_INTERVAL s (rq's defaults: 405 s and 30 s).
WORKER_TTL = 20
JOB_MONITORING_INTERVAL = 5
# A worker whose last heartbeat is older than this is dead (/healthz does not count it):
# several missed heartbeats, so a worker merely slowed by a loaded machine still counts.
HEARTBEAT_STALE_SECONDS = 30
# Re-arm maintenance every minute (rq's maintenance default: 10 min).
MAINTENANCE_INTERVAL = 60


class ExportWorker(rq.Worker):
    def __init__(self, queues, *args, **kwargs):
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL)
        # django-rq's rqworker always passes --worker-ttl, rq's default unless given.
        if kwargs.get("worker_ttl") in (None, DEFAULT_WORKER_TTL) and not kwargs.get(
            "default_worker_ttl"
        ):
            kwargs["worker_ttl"] = WORKER_TTL
        super().__init__(_maintenance_first(queues, kwargs.get("connection")), *args, **kwargs)

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        forks_die_with_this_process()
        _arm()

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        _arm()


def _arm() -> None:
    from exports.maintenance import arm_maintenance

    arm_maintenance()


def _maintenance_first(queues, connection):
    """The worker's queues with `maintenance` in front (added if missing)."""
    import django_rq

    queues = list(queues) if isinstance(queues, (list, tuple)) else [queues]
    names = [q if isinstance(q, str) else q.name for q in queues]
    if MAINTENANCE_QUEUE in names:
        index = names.index(MAINTENANCE_QUEUE)
        return [queues[index], *queues[:index], *queues[index + 1 :]]
    return [django_rq.get_queue(MAINTENANCE_QUEUE), *queues]
