"""Slow work off the request thread: the budget bounds every caller, a hung job holds nobody
after its own budget, and the next job for the key starts once the hung one is gone."""

import threading
import time

import pytest

from exports import timebox
from tests.waiting import wait_until


def test_a_hung_job_holds_only_its_first_budget_then_nobody():
    release = threading.Event()
    began = time.monotonic()
    with pytest.raises(timebox.NotDone):
        timebox.within_budget("camera-x", release.wait, 0.2)
    assert time.monotonic() - began >= 0.2
    began = time.monotonic()
    with pytest.raises(timebox.NotDone):  # the hung job's budget is over: no waiting
        timebox.within_budget("camera-x", lambda: "never runs", 30)
    assert time.monotonic() - began < 10
    release.set()
    wait_until(lambda: "camera-x" not in timebox._running, 30, "the hung job to end")
    assert timebox.within_budget("camera-x", lambda: 42, 30) == 42


def test_callers_arriving_during_a_job_share_its_result_and_errors_reach_them():
    release = threading.Event()
    answers = []

    def caller():
        answers.append(timebox.within_budget("camera-y", lambda: release.wait() and "indexed", 60))

    first = threading.Thread(target=caller)
    first.start()
    wait_until(lambda: "camera-y" in timebox._running, 30, "the job to start")
    second = threading.Thread(target=caller)
    second.start()
    release.set()
    first.join(60)
    second.join(60)
    assert answers == ["indexed", "indexed"]
    with pytest.raises(ZeroDivisionError):
        timebox.within_budget("camera-z", lambda: 1 / 0, 30)
