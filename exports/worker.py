"""The rq worker class psimexport runs (settings.RQ["WORKER_CLASS"]).

- serves the `maintenance` queue before all others, so housekeeping that frees stuck
  exports never waits behind them;
- re-arms the maintenance schedule when it starts and every minute after, so a Redis that
  was flushed or restarted empty gets it back;
- its work horse and scheduler processes die with it (they would otherwise live on as
  orphans, the scheduler holding its lock).
"""

import rq

from psimexport.lifeline import forks_die_with_this_process

MAINTENANCE_QUEUE = "maintenance"
# Heartbeat and re-arm every minute (rq's defaults: 420 s and 10 min).
WORKER_TTL = 60


class ExportWorker(rq.Worker):
    def __init__(self, queues, *args, **kwargs):
        kwargs.setdefault("maintenance_interval", 60)
        if kwargs.get("default_worker_ttl") is None and kwargs.get("worker_ttl") is None:
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
