"""Tie a process's life to its parent's, so nothing `make run` started outlives it.

Linux's PR_SET_PDEATHSIG sends a signal to a process when the thread that forked it exits,
even if the parent was killed outright (SIGKILL, the OOM killer). It must be set in the child
after the fork, and it is cleared in grandchildren, so each generation sets its own; a
parent-death check right after closes the race where the parent died before the call.
"""

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only).

    `parent_pid` is the parent's pid as seen before the fork; if the parent is already gone
    (this process was re-parented), exit at once.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def popen_hook():
    """A `preexec_fn` for subprocess.Popen: the child dies with this process."""
    parent = os.getpid()
    return lambda: die_with_parent(parent)


def forks_die_with_this_process() -> None:
    """Every child this process forks from now on (rq's work horse and scheduler) dies with it."""
    parent = {}

    def before():
        parent["pid"] = os.getpid()

    def after_in_child():
        die_with_parent(parent.get("pid"))

    os.register_at_fork(before=before, after_in_child=after_in_child)
