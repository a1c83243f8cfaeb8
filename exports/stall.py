"""Interrupting an export whose engine hangs on its input (an archive on a mount gone away)."""

import signal
import threading
import time


class ExportStalled(Exception):
    """Raised in the job's thread by StallWatch: the engine hangs on its input."""


class StallWatch:
    """Interrupts an engine that has not called back for `seconds` (blocked reading an
    archive that hangs): a signal to the job's thread breaks the blocking system call and
    raises ExportStalled there. Only in the main thread (where Python runs signal handlers),
    which is where rq runs jobs."""

    def __init__(self, reporter, seconds: float | None):
        # reporter: the job's ProgressReporter (its called_at and stalled)
        self.reporter = reporter
        self.seconds = seconds
        self.active = bool(seconds) and threading.current_thread() is threading.main_thread()
        self._stop = threading.Event()
        self._previous = None

    def __enter__(self):
        if self.active:
            self._previous = signal.signal(signal.SIGUSR1, self._raise)
            threading.Thread(target=self._watch, daemon=True, name="stall-watch").start()
        return self

    def __exit__(self, *exc):
        if self.active:
            self._stop.set()
            signal.signal(signal.SIGUSR1, self._previous)

    def _raise(self, signum, frame):
        raise ExportStalled(f"no progress for {self.reporter.stalled:.0f} s")

    def _watch(self):
        main = threading.main_thread().ident
        while not self._stop.wait(min(1.0, self.seconds / 4)):
            quiet = time.monotonic() - self.reporter.called_at
            if quiet >= self.seconds:
                self.reporter.stalled = quiet
                signal.pthread_kill(main, signal.SIGUSR1)
                self.reporter.called_at = time.monotonic()  # again later if it did not stop
