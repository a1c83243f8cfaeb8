"""Wait for a condition, never for a fixed time: tests must pass on a loaded machine."""

import time


def wait_until(condition, seconds: float = 60, what: str = "the condition", poll: float = 0.05):
    """Call `condition` until it returns something truthy (returned), or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(poll)


def process_gone(pid: int) -> bool:
    """True when no process with this pid runs (a zombie counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
