"""The export job on a real Redis: cancel, a killed worker, Redis down, the concurrency limit,
expiry, and a segment that disappears mid-export."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from rq import Queue

from exports import jobs, lease, maintenance
from exports.models import AuditEvent, ExportTask
from tests import api_support
from tests.api_support import T0, psim, run_worker
from tests.waiting import wait_until

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parent.parent
WHOLE = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=6))}


def create(api, capture, **body):
    with capture(execute=True):
        response = api.create(**(body or WHOLE))
    assert response.status_code == 200, response.json()
    return ExportTask.objects.get(id=response.json()["ArchiveTaskId"])


def task_files(task) -> list[Path]:
    folder = Path(django_settings.EXPORTS_DIR) / str(task.id)
    return sorted(folder.rglob("*")) if folder.exists() else []


def published(task) -> list[str]:
    """What a ready task's folder holds: its file and the file's signed manifest."""
    return sorted([Path(task.output_path).name, "manifest.json", "manifest.sig"])


def test_progress_is_written_monotonically_and_reaches_100_only_when_ready(
    alice, exports_queue, django_capture_on_commit_callbacks, monkeypatch
):
    seen = []
    original = jobs.ProgressReporter.progress

    def spy(self, value):
        original(self, value)
        seen.append(ExportTask.objects.get(id=self.task_id).percents)

    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 0.0)
    monkeypatch.setattr(jobs.ProgressReporter, "progress", spy)
    task = create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    task.refresh_from_db()
    assert seen and seen == sorted(seen) and max(seen) < 100
    assert (task.state, task.percents, task.attempts) == ("ReadyForDownload", 100, 1)
    assert len(task.sha256) == 64 and task.size > 0 and task.technique
    assert task.expires_at - task.finished_at == timedelta(hours=24)


def test_cancelling_a_running_export_stops_it_and_leaves_no_file(
    alice, exports_queue, django_capture_on_commit_callbacks, monkeypatch
):
    original = jobs.ProgressReporter.progress
    calls = []

    def cancel_on_first_progress(self, value):
        if not calls:  # the operator presses Delete while the export runs
            response = alice.post("/deletearchivetask", {"ArchiveTaskId": str(self.task_id)})
            calls.append(response.json())
        original(self, value)

    # The job looks at the row on every progress call, so the tiny export notices at once.
    monkeypatch.setattr(jobs, "CANCEL_CHECK_INTERVAL", 0.0)
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 0.0)
    monkeypatch.setattr(jobs.ProgressReporter, "progress", cancel_on_first_progress)
    task = create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    task.refresh_from_db()
    assert calls[0]["State"] == "Cancelled" and calls[0]["Url"] is None
    assert task.state == "Cancelled" and task.percents < 100
    assert task_files(task) == []
    assert AuditEvent.objects.filter(task_id=task.id, action="cancel").exists()
    assert not AuditEvent.objects.filter(task_id=task.id, action="finish").exists()
    # Deleting again is harmless.
    again = alice.post("/deletearchivetask", {"ArchiveTaskId": str(task.id)})
    assert again.status_code == 200 and again.json()["State"] == "Cancelled"


def test_a_queued_task_that_is_deleted_never_runs(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    task = create(alice, django_capture_on_commit_callbacks)
    response = alice.post(f"/deletearchivetask?archivetaskid={task.id}")
    assert response.json()["State"] == "Cancelled"
    run_worker(exports_queue)
    task.refresh_from_db()
    assert task.state == "Cancelled" and task.started_at is None


def move_archive_to_a_copy(tmp_path):
    """Give camera 1 a private copy of the archive, which a test may then damage."""
    import shutil

    from exports.archive import index_camera

    camera = api_support.Camera.objects.get(camera_id="1")
    copy = tmp_path / "copy"
    shutil.copytree(camera.archive_path, copy)
    camera.archive_path = str(copy)
    camera.save()
    index_camera(camera)
    return copy


def test_a_segment_deleted_mid_export_ends_the_task_cleanly(
    alice, exports_queue, django_capture_on_commit_callbacks, monkeypatch, tmp_path
):
    copy = move_archive_to_a_copy(tmp_path)
    last = sorted(copy.rglob("1/*.mp4"))[-1]
    original = jobs.ProgressReporter.progress

    def recorder_deletes_a_segment(self, value):
        last.unlink(missing_ok=True)
        original(self, value)

    monkeypatch.setattr(jobs.ProgressReporter, "progress", recorder_deletes_a_segment)
    task = create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    task.refresh_from_db()
    if task.state == "Failed":
        assert "deleted" in task.error_message or "no longer" in task.error_message, task.error_message
        assert task_files(task) == []
    else:  # the engine had the file open already: a complete export
        assert task.state == "ReadyForDownload" and task.percents == 100
        assert [p.name for p in task_files(task)] == published(task)
        # The manifest does not vouch for the deleted source: it lists it as skipped, or (read
        # before it went) as a source that could not be hashed.
        manifest = json.loads((task_files(task)[1]).read_bytes())
        deleted = last.relative_to(copy).as_posix()
        used = {s["path"]: s for s in manifest["sources"]}
        assert ("unreadable" in used[deleted]) if deleted in used else any(
            last.name in line for line in manifest["recorded"]["skipped"]
        )


@pytest.mark.django_db(transaction=True)
def test_redis_down_answers_503_and_leaves_nothing_waiting(alice, monkeypatch):
    closed = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(jobs, "get_queue", lambda: Queue("exports", connection=closed))
    response = alice.create(**WHOLE)
    assert response.status_code == 503
    body = response.json()
    assert body["ArchiveTaskId"] is None and body["State"] == "Failed"
    assert body["ErrorMessage"] == "job queue unavailable"
    assert not ExportTask.objects.filter(state__in=ExportTask.ACTIVE_STATES).exists()
    (task,) = ExportTask.objects.all()
    assert (task.state, task.error_message) == ("Failed", "job queue unavailable")
    assert AuditEvent.objects.filter(task_id=task.id, action="fail").exists()
    health = api_support.Client().get("/healthz")
    assert health.status_code == 503 and health.json()["Redis"].startswith("error")


def test_disk_budget_and_free_space_floor_refuse_new_tasks_with_507(
    alice, exports_queue, settings, django_capture_on_commit_callbacks
):
    settings.PSIMEXPORT_MIN_FREE_BYTES = 1 << 60
    response = alice.create(**WHOLE)
    assert response.status_code == 507 and "bytes free" in response.json()["ErrorMessage"]
    settings.PSIMEXPORT_MIN_FREE_BYTES = 0
    create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    settings.PSIMEXPORT_MAX_BYTES = 1
    response = alice.create(**WHOLE)
    assert response.status_code == 507 and "PSIMEXPORT_MAX_BYTES" in response.json()["ErrorMessage"]
    assert ExportTask.objects.count() == 1 and exports_queue.count == 0


def test_concurrency_limit_keeps_extra_tasks_waiting_not_failing(
    alice, exports_queue, settings, django_capture_on_commit_callbacks
):
    settings.PSIMEXPORT_MAX_CONCURRENT = 1
    running = create(alice, django_capture_on_commit_callbacks)
    ExportTask.objects.filter(id=running.id).update(state="InProgress", started_at=timezone.now())
    exports_queue.empty()
    waiting = create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    waiting.refresh_from_db()
    assert waiting.state == "Created" and waiting.attempts == 0
    scheduled = exports_queue.scheduled_job_registry
    assert scheduled.get_job_ids() == [str(waiting.id)]
    # The slot frees up; the retried job then runs.
    ExportTask.objects.filter(id=running.id).update(state="Cancelled")
    scheduled.requeue(str(waiting.id))
    run_worker(exports_queue)
    waiting.refresh_from_db()
    assert waiting.state == "ReadyForDownload"


def test_finished_exports_expire_after_the_retention(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    task = create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    task.refresh_from_db()
    assert task_files(task)
    assert maintenance.expire_finished_exports() == 0
    assert maintenance.expire_finished_exports(now=task.expires_at + timedelta(seconds=1)) == 1
    task.refresh_from_db()
    assert task.state == "Deleted" and task_files(task) == []
    status = alice.status(task.id).json()
    assert status["State"] == "Deleted" and status["Url"] is None
    assert alice.get("/download", {"file": str(task.id)}).status_code == 410
    assert AuditEvent.objects.filter(task_id=task.id, action="expire").exists()


def test_stuck_task_is_requeued_once_then_failed(alice, exports_queue, django_capture_on_commit_callbacks):
    task = create(alice, django_capture_on_commit_callbacks)
    exports_queue.empty()
    long_ago = timezone.now() - timedelta(minutes=10)
    ExportTask.objects.filter(id=task.id).update(state="InProgress", started_at=long_ago, attempts=1)
    (Path(django_settings.EXPORTS_DIR) / str(task.id)).mkdir(parents=True)
    assert maintenance.recover_stuck_tasks() == 1
    task.refresh_from_db()
    assert task.state == "Created" and exports_queue.job_ids == [str(task.id)]
    assert task_files(task) == [] and not (Path(django_settings.EXPORTS_DIR) / str(task.id)).exists()
    ExportTask.objects.filter(id=task.id).update(state="InProgress", started_at=long_ago, attempts=2)
    assert maintenance.recover_stuck_tasks() == 1
    task.refresh_from_db()
    assert task.state == "Failed" and "worker running this export stopped" in task.error_message


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(kind: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.gated_worker", kind], cwd=BASE_DIR, env=env)


def worker_env(worker_data: Path, gate: Path, pause_at: int = 1, **extra) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PSIMEXPORT_DATA": str(worker_data),
        "PSIMEXPORT_TEST_GATE": str(gate),
        "PSIMEXPORT_TEST_PAUSE_AT": str(pause_at),
        **extra,
    }


def paused_pid(gate: Path, worker, seconds: float = 120) -> int:
    """The pid of the process whose export is paused at the gate."""
    marker = Path(f"{gate}.paused")

    def paused():
        assert worker.poll() is None, "the worker exited early"
        return marker.exists() and marker.read_text()

    return int(wait_until(paused, seconds, "the export to reach the gate"))


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_export_is_recovered(alice, exports_queue, settings, tmp_path, monkeypatch):
    worker_data, gate = tmp_path / "worker-data", tmp_path / "gate"
    settings.EXPORTS_DIR = worker_data / "exports"
    settings.PSIMEXPORT_JOB_LEASE_SECONDS = 2
    task_id = alice.create(**WHOLE).json()["ArchiveTaskId"]
    env = worker_env(worker_data, gate, PSIMEXPORT_JOB_LEASE_SECONDS="2")
    worker = start_worker("simple", env)
    try:
        paused_pid(gate, worker)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert ExportTask.objects.get(id=task_id).state == "InProgress"
    # The killed run left a file in its attempt folder (a .part or spool, or, for an export
    # this short, the finished file the run never recorded); recovery must remove it.
    left = (worker_data / "exports" / task_id).rglob("*")
    assert any(path.is_file() for path in left)
    wait_until(lambda: not lease.lease_is_alive(task_id), 30, "the lease to lapse")
    assert maintenance.recover_stuck_tasks() == 1
    task = ExportTask.objects.get(id=task_id)
    assert task.state == "Created" and task.attempts == 1 and task.attempt_id is None
    assert not (worker_data / "exports" / task_id).exists()
    run_worker(exports_queue)
    task.refresh_from_db()
    assert (task.state, task.percents, task.attempts) == ("ReadyForDownload", 100, 2)
    assert [p.name for p in task_files(task)] == published(task)
    actions = list(
        AuditEvent.objects.filter(task_id=task_id).order_by("at").values_list("action", flat=True)
    )
    assert actions == ["create", "start", "retry", "start", "finish"]


@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_the_running_export_finish(alice, exports_queue, settings, tmp_path):
    """rq's warm shutdown: SIGTERM to the worker (as `make run` sends on stop) waits for the
    job; the export completes instead of leaving a half file."""
    worker_data, gate = tmp_path / "worker-data", tmp_path / "gate"
    settings.EXPORTS_DIR = worker_data / "exports"
    task_id = alice.create(**WHOLE).json()["ArchiveTaskId"]
    worker = start_worker("serve", worker_env(worker_data, gate))
    try:
        paused_pid(gate, worker)
        worker.send_signal(signal.SIGTERM)
        gate.touch()
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    task = ExportTask.objects.get(id=task_id)
    assert (task.state, task.percents) == ("ReadyForDownload", 100)
    assert [p.name for p in task_files(task)] == published(task)


def test_a_cancelled_task_can_be_retried_from_zero(
    alice, users, exports_queue, django_capture_on_commit_callbacks
):
    from exports import tasks

    task = create(alice, django_capture_on_commit_callbacks)
    tasks.cancel_task(task, users["alice"])
    with pytest.raises(tasks.TaskRefused):
        tasks.retry_task(ExportTask.objects.get(id=task.id).__class__(state="Created"), users["alice"])
    task = tasks.retry_task(task, users["alice"], "10.0.0.1")
    assert (task.state, task.percents, task.error_message) == ("Created", 0, "")
    run_worker(exports_queue)
    task.refresh_from_db()
    assert task.state == "ReadyForDownload"
    retry = AuditEvent.objects.get(task_id=task.id, action="retry")
    assert (retry.username, retry.remote_addr) == ("alice", "10.0.0.1")


def test_a_segment_deleted_before_the_job_runs_is_reported_with_the_file(
    alice, exports_queue, django_capture_on_commit_callbacks, tmp_path
):
    copy = move_archive_to_a_copy(tmp_path)
    task = create(alice, django_capture_on_commit_callbacks)
    gone = sorted(copy.rglob("1/*.mp4"))[1]
    gone.unlink()  # the recorder's retention removes one
    run_worker(exports_queue)
    task.refresh_from_db()
    assert task.state == "ReadyForDownload"  # the rest of the range is exported
    status = alice.status(task.id).json()
    assert "could not be read" in status["ErrorMessage"] and gone.name in status["ErrorMessage"]
    assert task.gaps == [{"From": "2026-11-20T10:00:02.000Z", "To": "2026-11-20T10:00:04.000Z"}]


# -- attempts, maintenance and the queue (issue 10) ---------------------------------------------


def claim(task):
    claimed = jobs.claim_task(str(task.id))
    assert claimed is not None and claimed.attempt_id is not None
    return claimed


def lose_worker(task):
    """What maintenance sees after a worker vanished: the run's lease lapsed long ago."""
    long_ago = timezone.now() - timedelta(minutes=10)
    ExportTask.objects.filter(id=task.id).update(started_at=long_ago)
    assert maintenance.recover_stuck_tasks() == 1


def test_a_stale_run_cannot_finish_fail_or_remove_the_files_of_the_current_run(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    task = create(alice, django_capture_on_commit_callbacks)
    stale = claim(task)
    lose_worker(task)  # the first run is re-queued while it still runs (a paused VM)
    current = claim(task)
    assert current.attempt_id != stale.attempt_id and current.attempts == 2
    mine = jobs._output_path(current)
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the current run's half-written file")

    assert jobs.execute_task(stale, jobs._output_path(stale)) is None  # sees it was replaced
    jobs._fail(stale, jobs._output_path(stale), True, "stale run crashed")
    row = ExportTask.objects.get(id=task.id)
    assert (row.state, row.attempt_id, row.error_message) == ("InProgress", current.attempt_id, "")
    assert mine.read_bytes() == b"the current run's half-written file"
    assert not jobs.attempt_dir(stale).exists()

    mine.unlink()
    assert jobs.execute_task(current, jobs._output_path(current)) is not None
    row.refresh_from_db()
    assert row.state == "ReadyForDownload" and (jobs.settings.EXPORTS_DIR / row.output_path).is_file()
    assert [p.name for p in task_files(row)] == published(row)


def test_recovery_rechecks_under_a_lock_so_a_run_finishing_meanwhile_keeps_its_file(
    alice, exports_queue, django_capture_on_commit_callbacks, monkeypatch
):
    task = create(alice, django_capture_on_commit_callbacks)
    run = claim(task)
    ExportTask.objects.filter(id=task.id).update(started_at=timezone.now() - timedelta(minutes=10))
    checked = lease.lease_is_alive

    def run_finishes_right_after_the_lease_check(*args, **kwargs):
        answer = checked(*args, **kwargs)
        if ExportTask.objects.get(id=task.id).state == "InProgress":
            assert jobs.execute_task(run, jobs._output_path(run)) is not None
        return answer

    monkeypatch.setattr(lease, "lease_is_alive", run_finishes_right_after_the_lease_check)
    maintenance.recover_stuck_tasks()
    row = ExportTask.objects.get(id=task.id)
    assert row.state == "ReadyForDownload"
    assert (jobs.settings.EXPORTS_DIR / row.output_path).is_file()


def test_created_tasks_whose_jobs_vanished_with_redis_are_queued_again(
    alice, exports_queue, redis_conn, django_capture_on_commit_callbacks
):
    task = create(alice, django_capture_on_commit_callbacks)
    redis_conn.flushdb()  # Redis restarted empty
    assert maintenance.requeue_lost_jobs() == 0  # just created: its job may be on its way
    later = timezone.now() + maintenance.ORPHAN_JOB_GRACE + timedelta(seconds=1)
    assert maintenance.requeue_lost_jobs(now=later) == 1
    assert maintenance.requeue_lost_jobs(now=later) == 0  # queued now: left alone
    run_worker(exports_queue)
    task.refresh_from_db()
    assert task.state == "ReadyForDownload"


def test_waiting_for_a_free_slot_is_not_logged_as_an_error(
    alice, exports_queue, settings, django_capture_on_commit_callbacks, caplog
):
    settings.PSIMEXPORT_MAX_CONCURRENT = 1
    running = create(alice, django_capture_on_commit_callbacks)
    ExportTask.objects.filter(id=running.id).update(state="InProgress", started_at=timezone.now())
    exports_queue.empty()
    waiting = create(alice, django_capture_on_commit_callbacks)
    with caplog.at_level("INFO"):
        run_worker(exports_queue)
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
    assert any("waits" in r.getMessage() for r in caplog.records)
    assert exports_queue.scheduled_job_registry.get_job_ids() == [str(waiting.id)]


def test_another_users_export_does_not_wait_behind_a_flood_and_cancelled_jobs_leave_the_queue(
    alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    flood = [create(alice, django_capture_on_commit_callbacks) for _ in range(5)]
    body = {"CameraId": "2", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}
    other = create(bob, django_capture_on_commit_callbacks, **body)
    assert exports_queue.job_ids[0] == str(other.id)  # bob had nothing queued: goes first
    assert exports_queue.job_ids[1] == str(flood[0].id)
    for task in flood:
        alice.post("/deletearchivetask", {"ArchiveTaskId": str(task.id)})
    assert exports_queue.job_ids == [str(other.id)]


def test_maintenance_has_its_own_queue_served_first_and_is_rearmed_when_a_worker_starts(
    redis_conn, exports_queue
):
    from exports.worker import ExportWorker

    worker = ExportWorker([exports_queue], connection=exports_queue.connection)
    assert worker.queue_names() == ["maintenance", "exports"]
    assert maintenance.get_queue().count == 0  # a fresh (or flushed) Redis: nothing pending
    worker.bootstrap()
    try:
        (pending,) = maintenance.get_queue().jobs
        assert pending.func_name == "exports.maintenance.run_maintenance"
        worker.run_maintenance_tasks()  # every minute: still one round pending, not two
        assert maintenance.get_queue().count == 1
    finally:
        worker.teardown()  # also stops its pub/sub listener thread


def test_healthz_counts_workers_with_a_recent_heartbeat_and_says_when_maintenance_is_late(
    client, redis_conn, exports_queue
):
    from rq import Worker

    from exports.worker import HEARTBEAT_STALE_SECONDS

    body = client.get("/healthz").json()
    assert (body["Workers"], body["MaintenanceLastRun"], body["Status"]) == (0, None, "degraded")
    worker = Worker([exports_queue], connection=exports_queue.connection)
    worker.register_birth()
    maintenance.run_maintenance(reschedule=False, reindex=False)
    body = client.get("/healthz").json()
    assert body["Workers"] == 1 and body["Maintenance"] == "ok"
    assert body["MaintenanceAgeSeconds"] < 60
    redis_conn.set(maintenance.LAST_RUN_KEY, f"{time.time() - 181:.3f}")
    body = client.get("/healthz").json()
    assert (body["Maintenance"], body["Status"]) == ("late", "degraded")
    # Still registered, but silent for longer than a live worker ever is: dead.
    stale = timezone.now() - timedelta(seconds=HEARTBEAT_STALE_SECONDS + 1)
    worker.connection.hset(worker.key, "last_heartbeat", stale.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert client.get("/healthz").json()["Workers"] == 0
    worker.register_death()


@pytest.mark.django_db(transaction=True)
def test_healthz_stops_counting_a_worker_killed_with_sigkill_while_rq_still_lists_it(
    client, redis_conn, exports_queue, tmp_path
):
    """Two real workers; one is killed outright and cannot unregister. rq keeps listing it
    (here for good: its registration is made permanent, as rq's TTL could be long), but its
    heartbeats stop, and /healthz counts only the live one. The live one, idle, keeps
    heartbeating."""
    from rq import Worker

    def workers() -> int:
        return client.get("/healthz").json()["Workers"]

    env = worker_env(tmp_path / "worker-data", tmp_path / "gate")
    doomed, survivor = start_worker("serve", env), start_worker("serve", env)
    try:
        wait_until(lambda: workers() == 2, 120, "both workers to be counted")
        registered = {w.pid: w for w in Worker.all(connection=redis_conn)}
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(30)
        redis_conn.persist(registered[doomed.pid].key)
        wait_until(lambda: workers() == 1, 120, "the killed worker to drop out", poll=0.5)
        assert {w.pid for w in Worker.all(connection=redis_conn)} == {doomed.pid, survivor.pid}
        alive = registered[survivor.pid]
        beat = alive.last_heartbeat
        wait_until(
            lambda: alive.refresh() or alive.last_heartbeat > beat, 120,
            "the idle worker's next heartbeat", poll=0.5,
        )
        assert workers() == 1
    finally:
        for worker in (doomed, survivor):
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)


@pytest.mark.django_db(transaction=True)
def test_a_job_survives_its_database_connections_being_terminated(
    alice, exports_queue, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL (set DATABASE_URL)")
    import psycopg

    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 0.0)
    original = jobs.ProgressReporter.progress
    terminated = []

    def terminate_the_jobs_connection(self, value):
        connection.ensure_connection()  # the one the job reconnected, if it had to
        backend = connection.connection.info.backend_pid
        if backend not in terminated:
            with psycopg.connect(_database_url().replace("postgres://", "postgresql://")) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [backend])
            terminated.append(backend)
        original(self, value)

    monkeypatch.setattr(jobs.ProgressReporter, "progress", terminate_the_jobs_connection)
    task_id = alice.create(**WHOLE).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    monkeypatch.undo()
    task = ExportTask.objects.get(id=task_id)
    assert terminated  # every connection the job used was killed under it
    assert (task.state, task.percents, task.attempts) == ("ReadyForDownload", 100, 1)


def test_a_second_export_of_the_same_footage_takes_the_frame_indexes_from_the_cache(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    from exports import frame_cache

    create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    built, hits = frame_cache.counts["built"], frame_cache.counts["hit"]
    task = create(alice, django_capture_on_commit_callbacks)
    run_worker(exports_queue)
    task.refresh_from_db()
    assert task.state == "ReadyForDownload"
    assert frame_cache.counts["built"] == built  # no file demuxed again
    assert frame_cache.counts["hit"] > hits
