"""The lease of a running export: a Redis key that says its run is alive.

A task InProgress whose lease lapsed has lost its worker (SIGKILL, a reboot); maintenance
re-queues it. The key holds the run's attempt id, so a run never renews another run's lease.
"""

import logging
import os
import threading

import redis
from django.conf import settings

log = logging.getLogger(__name__)

# A running job refreshes its lease (settings.PSIMEXPORT_JOB_LEASE_SECONDS); a task
# InProgress without one has lost its worker.
LEASE_KEY = "psimexport:lease:{}"


def _connection():
    from exports.jobs import get_queue

    return get_queue().connection


LEASE_RENEW = """
local current = redis.call('get', KEYS[1])
if current == false or current == ARGV[1] then
    redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return 1
end
return 0
"""


class Lease:
    """A Redis key with a short TTL, holding the attempt id, that a background thread keeps
    alive while the job runs.

    If the worker dies (SIGKILL, reboot) the key expires and maintenance re-queues the task.
    A renewal never takes over a key that names another attempt; one lost to a Redis restart
    or flush is written again.
    """

    def __init__(self, task_id, attempt_id=None):
        self.key = LEASE_KEY.format(task_id)
        self.value = str(attempt_id or os.getpid())
        self.seconds = settings.PSIMEXPORT_JOB_LEASE_SECONDS
        self.connection = _connection()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{task_id}")

    def __enter__(self):
        try:
            self.connection.set(self.key, self.value, ex=self.seconds)
        except redis.RedisError as error:  # the renewal thread tries again
            log.warning("cannot take lease %s: %s", self.key, error)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            if self.connection.get(self.key) == self.value.encode():
                self.connection.delete(self.key)
        except redis.RedisError:
            pass

    def _renew(self):
        while not self._stop.wait(max(1.0, self.seconds / 3)):
            try:
                self.connection.eval(LEASE_RENEW, 1, self.key, self.value, self.seconds)
            except redis.RedisError as error:
                log.warning("cannot renew lease %s: %s", self.key, error)


def lease_holder(task_id, conn=None) -> str | None:
    """The attempt id (or pid) that holds the task's lease, None when nobody does."""
    conn = conn or _connection()
    value = conn.get(LEASE_KEY.format(task_id))
    return value.decode() if value is not None else None


def lease_is_alive(task_id, conn=None, attempt_id=None) -> bool:
    holder = lease_holder(task_id, conn)
    if holder is None:
        return False
    return attempt_id is None or holder == str(attempt_id)
