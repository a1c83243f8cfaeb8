"""The fault matrix of issue 10, all real: a real rq worker subprocess (psimexport's worker
class, forking a work horse per job), the test Redis, the test database (PostgreSQL for the
pg_terminate_backend case), real files.

Each export pauses at a gate (tests/gated_worker.py) at a chosen percentage; the fault is
injected there and the gate opened. Each case then ends with the task in the right state, no
partial file a download could see, no orphan folder, nothing stuck longer than the lease plus
a minute, and an audit trail saying what happened. Maintenance is run by the test as often as
it likes (in production it runs every minute; add up to that to the recovery times printed).
"""

import os
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from exports import jobs, maintenance
from exports.models import AuditEvent, ExportTask
from tests import api_support
from tests.api_support import T0, psim
from tests.test_jobs import _database_url
from tests.waiting import wait_until

recordings, cameras, users, tokens = (
    api_support.recordings,
    api_support.cameras,
    api_support.users,
    api_support.tokens,
)
alice = api_support.alice

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
BASE_DIR = Path(__file__).resolve().parent.parent
WHOLE = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=6))}
LEASE = 2
STUCK_LIMIT = LEASE + 60  # nothing may stay stuck longer than the lease plus a minute
FINAL = ("ReadyForDownload", "Failed", "Cancelled", "Deleted")


def figure(case: str, seconds: float, state: str) -> None:
    """One line of the fault matrix's figures (run pytest with -s to see them)."""
    line = f"FAULT {case}: {state} after {seconds:.1f} s"
    print(line)
    with open(os.environ.get("PSIMEXPORT_FAULT_FIGURES", os.devnull), "a") as out:
        out.write(line + "\n")


class Rig:
    """One worker subprocess, restarted when it dies (as `make run` does), and a gate."""

    def __init__(self, tmp_path: Path, pause_at: int, **env):
        self.data = tmp_path / "worker-data"
        self.gate = tmp_path / "gate"
        self.pause_at = pause_at
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "PSIMEXPORT_DATA": str(self.data),
            "PSIMEXPORT_TEST_GATE": str(self.gate),
            "PSIMEXPORT_TEST_PAUSE_AT": str(pause_at),
            "PSIMEXPORT_JOB_LEASE_SECONDS": str(LEASE),
            **env,
        }
        self.worker = None
        self.start()

    def start(self) -> None:
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "tests.gated_worker", "serve"], cwd=BASE_DIR, env=self.env
        )

    def keep_alive(self) -> None:
        if self.worker.poll() is not None:
            self.start()

    def paused_pid(self, seconds: float = 120) -> int:
        marker = Path(f"{self.gate}.paused")
        return int(
            wait_until(
                lambda: self.keep_alive() or (marker.exists() and marker.read_text()),
                seconds,
                "the export to reach the gate",
            )
        )

    def open_gate(self) -> float:
        self.gate.touch()
        return time.monotonic()

    def settle(self, task_id, since: float, case: str) -> ExportTask:
        """Run maintenance until the task reaches a final state; print how long it took."""

        def final():
            self.keep_alive()
            maintenance.run_maintenance(reschedule=False, reindex=False)
            return ExportTask.objects.get(id=task_id).state in FINAL

        wait_until(final, STUCK_LIMIT + 60, f"task {task_id} to reach a final state", poll=0.2)
        task = ExportTask.objects.get(id=task_id)
        elapsed = time.monotonic() - since
        figure(case, elapsed, task.state)
        assert elapsed < STUCK_LIMIT, f"stuck for {elapsed:.0f} s"
        return task

    def stop(self) -> None:
        if self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()


@pytest.fixture
def rig_factory(settings, tmp_path, monkeypatch):
    settings.PSIMEXPORT_JOB_LEASE_SECONDS = LEASE
    rigs = []

    def make(pause_at: int = 50, **env) -> Rig:
        rig = Rig(tmp_path, pause_at, **env)
        settings.EXPORTS_DIR = rig.data / "exports"
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.stop()


def assert_clean(task) -> None:
    """No partial file, no orphan or working folder; a ready task has exactly its file and
    the file's signed manifest."""
    root = Path(django_settings.EXPORTS_DIR)
    left = sorted(p.relative_to(root) for p in root.rglob("*")) if root.exists() else []
    if task.state == "ReadyForDownload":
        evidence = [f"{task.id}/manifest.json", f"{task.id}/manifest.sig"]
        assert [str(p) for p in left] == sorted([str(task.id), task.output_path, *evidence]), left
        path = root / task.output_path
        assert path.stat().st_size == task.size and jobs._sha256(path) == task.sha256
    else:
        assert left == [], left
    assert not any(p.name.endswith(".part") for p in left)


def actions(task_id) -> list[str]:
    events = AuditEvent.objects.filter(task_id=task_id).order_by("at", "id")
    return list(events.values_list("action", flat=True))


def create(alice, **body) -> str:
    response = alice.create(**(body or WHOLE))
    assert response.status_code == 200, response.json()
    return response.json()["ArchiveTaskId"]


# -- the work horse dies -----------------------------------------------------------------------


@pytest.mark.parametrize("percent", [10, 50, 90])
def test_work_horse_killed_mid_export_is_requeued_once_and_completes(
    alice, redis_conn, rig_factory, percent
):
    rig = rig_factory(pause_at=percent)
    task_id = create(alice)
    horse = rig.paused_pid()
    assert horse != rig.worker.pid  # the work horse, not the worker
    os.kill(horse, signal.SIGKILL)
    since = rig.open_gate()
    task = rig.settle(task_id, since, f"work horse SIGKILLed at {percent} %")
    assert (task.state, task.attempts, task.percents) == ("ReadyForDownload", 2, 100)
    assert actions(task_id) == ["create", "start", "retry", "start", "finish"]
    assert_clean(task)


def test_sigterm_to_the_worker_lets_the_export_finish(alice, redis_conn, rig_factory):
    rig = rig_factory(pause_at=50)
    task_id = create(alice)
    rig.paused_pid()
    rig.worker.send_signal(signal.SIGTERM)
    since = rig.open_gate()
    assert rig.worker.wait(120) == 0
    task = rig.settle(task_id, since, "SIGTERM to the worker")
    assert (task.state, task.attempts) == ("ReadyForDownload", 1)
    assert actions(task_id) == ["create", "start", "finish"]
    assert_clean(task)


# -- Redis and the database go away ----------------------------------------------------------


def test_redis_restarted_empty_mid_export(alice, redis_conn, rig_factory):
    from tests import redis_env

    if redis_env._embedded is None:
        pytest.skip("needs the suite's own embedded Redis (TEST_REDIS_URL points elsewhere)")
    rig = rig_factory(pause_at=50)
    task_id = create(alice)
    rig.paused_pid()
    redis_env._embedded.restart()
    since = rig.open_gate()
    task = rig.settle(task_id, since, "Redis restarted empty")
    assert task.state == "ReadyForDownload" and task.attempts <= 2
    assert actions(task_id)[-1] == "finish"
    assert_clean(task)


def test_redis_flushed_mid_export(alice, redis_conn, rig_factory):
    rig = rig_factory(pause_at=50)
    task_id = create(alice)
    rig.paused_pid()
    redis_conn.flushdb()
    since = rig.open_gate()
    task = rig.settle(task_id, since, "Redis flushed")
    assert task.state == "ReadyForDownload" and task.attempts <= 2
    assert actions(task_id)[-1] == "finish"
    assert_clean(task)
    # The worker re-arms the maintenance schedule the flush took away (every minute).
    wait_until(lambda: redis_conn.get(maintenance.PENDING_KEY), 120, "maintenance to be re-armed")


def test_postgresql_connections_terminated_mid_export(alice, redis_conn, rig_factory):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL (set DATABASE_URL)")
    rig = rig_factory(pause_at=50)
    task_id = create(alice)
    rig.paused_pid()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1  # the worker's connections
    since = rig.open_gate()
    task = rig.settle(task_id, since, "PostgreSQL connections terminated")
    assert (task.state, task.attempts) == ("ReadyForDownload", 1)
    assert actions(task_id) == ["create", "start", "finish"]
    assert_clean(task)


# -- the disk and the recordings ----------------------------------------------------------------


def test_export_directory_full_fails_the_task_with_a_clear_message(
    alice, redis_conn, rig_factory, tmp_path, settings
):
    settings.PSIMEXPORT_MIN_FREE_BYTES = 0  # the disk fills up after the task was accepted
    rig = rig_factory(pause_at=0)  # a tiny export is all in the muxer's buffer until its end
    exports = rig.data / "exports"
    exports.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(exports)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        task_id = create(alice)
        rig.paused_pid()
        fill(exports / "filler")  # another tenant fills the disk
        since = rig.open_gate()
        task = rig.settle(task_id, since, "export directory full")
        (exports / "filler").unlink()
        assert task.state == "Failed" and "no space left" in task.error_message
        assert actions(task_id) == ["create", "start", "fail"]
        assert_clean(task)
    finally:
        rig.stop()
        subprocess.run(["umount", "-l", str(exports)], check=False)


def fill(path: Path) -> None:
    """Write until not even one more byte fits."""
    with open(path, "wb", buffering=0) as filler:
        for size in (65536, 4096, 1):
            try:
                while True:
                    filler.write(b"\0" * size)
            except OSError:
                pass


def private_archive(tmp_path) -> Path:
    from tests.test_jobs import move_archive_to_a_copy

    return move_archive_to_a_copy(tmp_path)


@pytest.mark.parametrize("damage", ["deleted", "truncated", "rewritten"])
def test_a_source_segment_damaged_mid_export(alice, redis_conn, rig_factory, tmp_path, damage):
    copy = private_archive(tmp_path)
    last = sorted(copy.rglob("1/*.mp4"))[-1]
    rig = rig_factory(pause_at=10)
    task_id = create(alice)
    rig.paused_pid()
    if damage == "deleted":
        last.unlink()
    elif damage == "truncated":
        with open(last, "r+b") as handle:
            handle.truncate(last.stat().st_size // 3)
    else:
        last.write_bytes(os.urandom(last.stat().st_size))
    since = rig.open_gate()
    task = rig.settle(task_id, since, f"source segment {damage}")
    assert task.attempts == 1
    if task.state == "ReadyForDownload":
        # Either every frame (the engine had read or opened the file before the damage) or
        # what was readable, and ErrorMessage says what is missing.
        complete = task.details.get("frames") == 150
        assert complete or "could not be read" in task.error_message, (
            task.details,
            task.error_message,
        )
        assert actions(task_id) == ["create", "start", "finish"]
    else:
        assert task.state == "Failed" and task.error_message
        assert actions(task_id) == ["create", "start", "fail"]
    assert_clean(task)


# -- an archive that hangs ------------------------------------------------------------------------


def test_an_archive_that_hangs_fails_its_export_and_never_holds_the_api_or_pages(
    alice, redis_conn, rig_factory, tmp_path, users
):
    """A FIFO in place of a recorded segment: opening it blocks, as a file on a network
    mount whose server went away does."""
    copy = private_archive(tmp_path)
    last = sorted(copy.rglob("1/*.mp4"))[-1]
    rig = rig_factory(pause_at=-1, PSIMEXPORT_STALL_SECONDS="3")
    wait_until(maintenance.last_run_at, 120, "the worker's first maintenance round")
    last.unlink()
    os.mkfifo(last)
    try:
        began = time.monotonic()
        task_id = create(alice)
        task = rig.settle(task_id, began, "archive hangs (export)")
        assert task.state == "Failed" and "did not answer" in task.error_message
        assert actions(task_id) == ["create", "start", "fail"]
        assert_clean(task)

        timings = {}
        for name, call in {
            "create": lambda: alice.create(CameraId="1", From=psim(T0)),
            "status": lambda: alice.status(task_id),
        }.items():
            began = time.monotonic()
            assert call().status_code == 200
            timings[name] = time.monotonic() - began
        page = api_support.Client()
        page.force_login(users["root"])
        began = time.monotonic()
        assert page.get("/").status_code == 200
        thumb = page.get("/cameras/1/thumbnail.jpg")
        timings["cameras page + thumbnail"] = time.monotonic() - began
        assert thumb.status_code in (200, 404)
        for name, seconds in timings.items():
            figure(f"archive hangs ({name})", seconds, "answered")
        assert max(timings.values()) < 10
    finally:
        release(last)


def release(fifo: Path) -> None:
    """Let every reader blocked on the FIFO go (they read an empty file), then remove it."""
    if fifo.exists() and stat.S_ISFIFO(fifo.stat().st_mode):
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:  # no reader left
            pass
        fifo.unlink()
