"""Slow file-system work off the request thread, within a time budget.

An archive on a network mount can hang (a server gone away) and a growing archive can be
slow to probe; a web request must answer anyway. `within_budget` runs the work in a daemon
thread, one at a time per key (a camera), and waits for it at most the budget. Requests that
come while that work runs wait for it only until its budget is over (then it is late, maybe
hung, and nobody waits for it any more).
"""

import logging
import threading
import time

log = logging.getLogger(__name__)

_guard = threading.Lock()
_running: dict[str, tuple[threading.Event, float, dict]] = {}


class NotDone(Exception):
    """The work did not finish within its budget (it goes on in the background)."""


def within_budget(key: str, work, seconds: float):
    """Return work()'s result if it finishes within `seconds`, else raise NotDone. If work
    for this key already runs, wait for that one instead (within what is left of its budget)."""
    with _guard:
        if key in _running:
            done, deadline, outcome = _running[key]
        else:
            done, deadline, outcome = threading.Event(), time.monotonic() + seconds, {}
            _running[key] = (done, deadline, outcome)
            threading.Thread(
                target=_run, args=(key, work, outcome, done), daemon=True, name=f"timebox-{key}"
            ).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
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
