"""Slow file-system work off the request thread, within a time budget.

An archive on a network mount can hang (a server gone away) and a growing archive can be
slow to probe; a web request must answer anyway. `within_budget` runs the work in a daemon
thread, one at a time per key (a camera), and waits for it at most the budget. If the work
for that key is already running (perhaps hung), the caller does not wait at all.
"""

import logging
import threading

log = logging.getLogger(__name__)

_guard = threading.Lock()
_running: dict[str, threading.Event] = {}


class NotDone(Exception):
    """The work did not finish within its budget (it goes on in the background)."""


def within_budget(key: str, work, seconds: float):
    """Return work()'s result if it finishes within `seconds`, else raise NotDone."""
    with _guard:
        if key in _running:
            raise NotDone(f"{key}: still busy from an earlier request")
        done = _running[key] = threading.Event()
    outcome = {}
    thread = threading.Thread(
        target=_run, args=(key, work, outcome, done), daemon=True, name=f"timebox-{key}"
    )
    thread.start()
    if not done.wait(seconds):
        log.warning("%s: not done within %.1f s; carrying on without it", key, seconds)
        raise NotDone(f"{key}: not done within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _run(key, work, outcome, done) -> None:
    from django.db import connection

    try:
        outcome["value"] = work()
    except Exception as error:  # noqa: BLE001 - handed to the caller
        outcome["error"] = error
    finally:
        connection.close()  # this thread's own connection, if the work opened one
        with _guard:
            _running.pop(key, None)
        done.set()
