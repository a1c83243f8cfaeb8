"""What `make run` prints last: where to go and how to log in, after the startup noise.

A new user reads the end of the output. So the launcher waits until the site really serves
(gunicorn answers /healthz and the workers have registered) before printing the address, the
user name and, when the user was just created, the password.
"""

from __future__ import annotations

import json
import time
import urllib.request

READY_SECONDS = 90
POLL_SECONDS = 0.5


def wait_until_serving(base_url: str, workers: int, alive=lambda: True) -> bool:
    """True once /healthz answers with at least `workers` live workers on two polls in a row
    (the workers log their start-up lines right after registering), False on timeout or when
    `alive()` turns False."""
    deadline = time.monotonic() + READY_SECONDS
    ready_polls = 0
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(base_url + "healthz", timeout=5) as response:
                ready = (json.load(response).get("Workers") or 0) >= workers
        except (OSError, ValueError):
            ready = False
        ready_polls = ready_polls + 1 if ready else 0
        if ready_polls >= 2:
            return True
        time.sleep(POLL_SECONDS)
    return False


def banner(base_url: str, login_lines: list[str]) -> str:
    """The closing lines of `make run`; `login_lines` come from `manage.py ensure_superuser`."""
    rule = "=" * 72
    lines = [
        "",
        rule,
        f"psimexport is running at {base_url} (admin: {base_url}admin/). Ctrl-C stops it.",
        *login_lines,
        rule,
        "",
    ]
    return "\n".join(lines)
