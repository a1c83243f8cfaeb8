"""The audit trail's hash chain: every link, each kind of tampering named, concurrent writers
in separate processes, the migration that seals older events, and the admin's view of it.

Runs on SQLite and on PostgreSQL (DATABASE_URL), against the real database.
"""

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from exports import audit_chain
from exports.models import AuditChainHead, AuditEvent, Camera, ExportTask
from exports.tasks import record_audit
from tests.test_jobs import _database_url
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def task(tmp_path):
    camera = Camera.objects.create(camera_id="1", archive_path=str(tmp_path))
    return ExportTask.objects.create(
        camera=camera, requested_from=T0, start=T0, end=T0 + timedelta(seconds=5), format="mp4"
    )


def write_events(task, count):
    actions = [AuditEvent.Action.CREATE, AuditEvent.Action.START, AuditEvent.Action.FINISH]
    return [
        record_audit(task, actions[i % 3], None, "192.0.2.7", index=i) for i in range(count)
    ]


def verdict() -> str:
    """verify_audit's output, or its error (it exits non-zero on a broken chain)."""
    try:
        from io import StringIO

        out = StringIO()
        call_command("verify_audit", stdout=out)
        return out.getvalue()
    except CommandError as broken:
        return f"BROKEN {broken}"


def test_each_event_names_the_hash_of_the_one_before(task):
    events = write_events(task, 5)
    stored = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert stored[0].prev_hash == audit_chain.GENESIS
    for before, event in zip(stored, stored[1:], strict=False):
        assert event.prev_hash == before.hash
    for event in stored:
        assert event.hash == audit_chain.event_hash(event) and len(event.hash) == 64
    assert AuditChainHead.objects.get().hash == events[-1].hash
    assert verdict() == f"The audit chain holds: 5 events; head {events[-1].hash}\n"


def test_values_read_back_from_the_database_hash_as_written(task):
    """What each database does to values (jsonb numbers, inet spelling) keeps the hash."""
    record_audit(
        task, AuditEvent.Action.DOWNLOAD, None, "2001:0DB8:0000:0000:0000:0000:0000:0001",
        big=1e16, small=1e-7, ratio=0.1, whole=3.0, nested={"b": [1, (2, 3)], "a": "ß✓"},
        nul="a\x00b", huge=2**70, when=T0,
    )
    record_audit(task, AuditEvent.Action.VIEW, None, "::ffff:192.0.2.1")
    record_audit(task, AuditEvent.Action.VIEW)
    assert verdict().startswith("The audit chain holds: 3 events")


def test_an_event_changed_in_the_database_is_named(task):
    write_events(task, 4)
    AuditEvent.objects.filter(seq=2).update(username="mallory")
    assert verdict().startswith(
        "BROKEN audit chain broken after 1 good events: event #2 (id "
    )
    assert "was changed after it was written" in verdict()


def test_a_changed_and_rehashed_event_breaks_the_next_link(task):
    write_events(task, 4)
    event = AuditEvent.objects.get(seq=2)
    event.remote_addr = "198.51.100.9"
    AuditEvent.objects.filter(pk=event.pk).update(
        remote_addr=event.remote_addr, hash=audit_chain.event_hash(event)
    )
    message = verdict()
    assert "event #3 (id " in message and "does not follow event #2" in message


def test_a_removed_event_is_named(task):
    write_events(task, 5)
    AuditEvent.objects.filter(seq__in=[2, 3]).delete()
    assert "event #2–#3 missing: removed before event #4" in verdict()


def test_removing_the_last_events_is_noticed_through_the_head(task):
    write_events(task, 3)
    AuditEvent.objects.filter(seq=3).delete()
    assert "the chain ends at event #2 but its head names event #3" in verdict()


def test_an_event_written_around_the_chain_is_named(task):
    write_events(task, 2)
    AuditEvent.objects.bulk_create(
        [AuditEvent(task_id=task.id, camera_id="1", action="delete", username="mallory")]
    )
    assert "is not in the chain: it was written around it" in verdict()


def test_events_are_never_changed_through_the_model(task):
    (event,) = write_events(task, 1)
    event.username = "mallory"
    with pytest.raises(audit_chain.ChainError):
        event.save()


def test_deleting_a_user_does_not_break_the_chain(task):
    user = User.objects.create_user("leaver", password="pw-for-tests-only")
    record_audit(task, AuditEvent.Action.CREATE, user, "192.0.2.1")
    user.delete()
    assert AuditEvent.objects.get().user is None
    assert verdict().startswith("The audit chain holds: 1 events")


# -- concurrent writers --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_writers_in_several_processes_at_once_make_one_unbroken_chain(task, tmp_path):
    writers, each = 4, 60
    gate = tmp_path / "gate"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PSIMEXPORT_DATA": str(tmp_path / "writer-data"),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit_writer", f"w{n}", str(each), str(gate)],
            cwd=BASE_DIR, env=env,
        )
        for n in range(writers)
    ]
    try:
        wait_until(
            lambda: all(Path(f"{gate}.w{n}.ready").exists() for n in range(writers))
            or any(p.poll() for p in processes),
            120, "the writers to start",
        )
        gate.touch()
        for process in processes:
            assert process.wait(300) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert AuditEvent.objects.count() == writers * each
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * each + 1))
    # They really interleaved: the chain is not one writer's events after another's.
    order = list(AuditEvent.objects.order_by("seq").values_list("detail__writer", flat=True))
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches > writers
    report = audit_chain.verify_chain()
    assert report.ok, report.message
    assert report.events == writers * each


# -- the migration that seals events written before the chain ----------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_seals_older_events_into_the_chain():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    target = next(
        key for key in executor.loader.graph.leaf_nodes() if key[0] == "exports"
    )
    mine = next(
        key for key in executor.loader.disk_migrations
        if key[0] == "exports" and key[1].endswith("_evidence_data")
    )
    before = [p for p in executor.loader.graph.node_map[mine].parents if p.key[0] == "exports"]
    executor.migrate([before[0].key])
    try:
        old = executor.loader.project_state([before[0].key]).apps.get_model("exports", "AuditEvent")
        for index, action in enumerate(["create", "start", "finish", "download"]):
            old.objects.create(
                task_id=uuid.uuid4(), camera_id="1", action=action, username="old",
                remote_addr="192.0.2.1", at=T0 + timedelta(seconds=index),
                detail={"index": index, "share": 0.5},
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate([target])
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "action")) == [
        (1, "create"), (2, "start"), (3, "finish"), (4, "download")
    ]
    assert audit_chain.verify_chain().ok
    task_id = uuid.uuid4()
    AuditEvent.objects.create(task_id=task_id, camera_id="1", action="view", username="new")
    assert AuditEvent.objects.get(task_id=task_id).seq == 5
    report = audit_chain.verify_chain()
    assert report.ok and report.events == 5


# -- the admin ------------------------------------------------------------------------------


def auditor() -> Client:
    user = User.objects.create_user("auditor", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_auditevent"))
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_shows_the_last_check_and_queues_a_new_one(task, redis_conn):
    from exports.maintenance import get_queue
    from tests.api_support import run_worker

    write_events(task, 3)
    client = auditor()
    changelist = reverse("admin:exports_auditevent_changelist")
    assert "has not been checked yet" in client.get(changelist).content.decode()

    assert client.get(reverse("admin:exports_auditevent_check")).status_code == 405
    client.post(reverse("admin:exports_auditevent_check"))
    run_worker(get_queue())
    page = client.get(changelist).content.decode()
    assert "The audit chain holds: 3 events checked" in page

    AuditEvent.objects.filter(seq=2).update(detail={"index": 99})
    client.post(reverse("admin:exports_auditevent_check"))
    run_worker(get_queue())
    page = client.get(changelist).content.decode()
    assert "The audit chain is broken" in page and "event #2 (id" in page


def test_the_chain_check_is_for_those_who_may_view_the_trail(task, redis_conn):
    staff = User.objects.create_user("clerk", password="pw-for-tests-only", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.post(reverse("admin:exports_auditevent_check")).status_code == 403


def test_maintenance_queues_a_full_check_once_an_hour(task, redis_conn, caplog):
    from exports.maintenance import get_queue
    from tests.api_support import run_worker

    write_events(task, 2)
    assert audit_chain.check_periodically() is True
    assert audit_chain.check_periodically() is False  # queued already this hour
    run_worker(get_queue())
    check = audit_chain.last_check()
    assert check.checked_ok and check.checked_events == 2

    AuditEvent.objects.filter(seq=1).update(camera_id="9")
    redis_conn.delete(audit_chain.PERIODIC_CHECK_KEY)  # an hour later
    assert audit_chain.check_periodically() is True
    run_worker(get_queue())
    assert audit_chain.last_check().checked_ok is False
    assert "audit chain broken: event #1" in caplog.text
