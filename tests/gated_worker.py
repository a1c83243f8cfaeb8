"""A real rq worker for the job and fault tests, run as `python -m tests.gated_worker KIND`.

Its exports pause once, at PSIMEXPORT_TEST_PAUSE_AT percent, until the file
PSIMEXPORT_TEST_GATE exists; while paused, `<gate>.paused` holds the pid of the process
running the export (rq's work horse). A test can so kill or stop a worker at an exact point
of an export without guessing with sleeps.

KIND: `simple` (rq's SimpleWorker, burst), `burst` or `serve` (psimexport's own worker class,
forking a work horse per job, with the scheduler; `serve` runs until SIGTERM).
"""

import os
import sys
import time
from pathlib import Path


def gate_progress() -> None:
    from exports import jobs

    pause_at = float(os.environ.get("PSIMEXPORT_TEST_PAUSE_AT", "-1"))
    gate = os.environ.get("PSIMEXPORT_TEST_GATE")
    original = jobs.ProgressReporter.progress

    def gated(self, value):
        original(self, value)
        fraction = float(value) / (100.0 if float(value) > 1.0 else 1.0)
        if gate and 0 <= pause_at <= fraction * 100 and not os.path.exists(gate):
            paused = Path(f"{gate}.paused")
            if not paused.exists():
                # What the row says at the pause, so the test sees a consistent picture.
                jobs.this_attempt(self.task).update(
                    percents=max(self.percents, int(fraction * 100))
                )
                paused.write_text(str(os.getpid()))
            while not os.path.exists(gate):
                time.sleep(0.02)

    jobs.ProgressReporter.progress = gated


def main(kind: str) -> None:
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
    import django

    django.setup()
    gate_progress()
    import django_rq
    from rq import SimpleWorker

    queues = [django_rq.get_queue(name) for name in ("maintenance", "exports")]
    if kind == "simple":
        SimpleWorker(queues[1:], connection=queues[1].connection).work(burst=True)
        return
    from exports.worker import ExportWorker

    worker = ExportWorker(queues, connection=queues[0].connection)
    worker.work(burst=kind == "burst", with_scheduler=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "simple")
