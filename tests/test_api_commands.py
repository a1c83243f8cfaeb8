"""Commands (export_archive, create_api_token, start_maintenance) and the task admin."""

import io
import json
import re
from datetime import timedelta

import av
import django_rq
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from exports import maintenance
from exports.media.synth import frame_wall_time
from exports.models import ApiToken, AuditEvent, ExportTask
from tests import api_support
from tests.api_support import FRAME, T0, psim, run_worker, token_client

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice = api_support.alice

pytestmark = pytest.mark.django_db


def test_export_archive_writes_the_file_and_prints_a_summary(cameras, tmp_path):
    out = tmp_path / "clip.mov"
    stdout = io.StringIO()
    call_command(
        "export_archive", "1", psim(T0 + timedelta(seconds=0.52)), "2026-11-20T10:00:03.52Z",
        "--output", str(out), stdout=stdout,
    )
    summary = json.loads(stdout.getvalue())
    assert summary["bytes"] == out.stat().st_size
    assert set(summary) >= {"frames", "duration_s", "bytes", "technique", "gaps", "seconds"}
    with av.open(str(out)) as container:
        walls = [frame_wall_time(f.to_ndarray(format="gray")) for f in container.decode(video=0)]
    assert len(walls) == 75, summary
    assert walls[0] == T0 + timedelta(seconds=0.52)
    assert walls[-1] == T0 + timedelta(seconds=3.52) - FRAME
    task = ExportTask.objects.get()
    assert task.source == "command" and task.state == "ReadyForDownload" and task.output_path == ""
    # The signed manifest lies beside the file, and verify_export accepts the pair.
    manifest = tmp_path / "clip.mov.manifest.json"
    assert sorted(tmp_path.iterdir()) == [out, manifest, tmp_path / "clip.mov.manifest.sig"]
    verdict = io.StringIO()
    call_command("verify_export", str(out), str(manifest), stdout=verdict)
    assert "VERDICT: INTACT" in verdict.getvalue()


@pytest.mark.parametrize(
    "args,message",
    [
        (["9", "2026-11-20T10:00:00Z"], "no such camera"),
        (["1", "2026-11-20T12:00:00Z"], "no recording after"),
        (["1", "2026-11-20T10:00:02Z", "2026-11-20T10:00:01Z"], "TO must be after FROM"),
        (["1", "noon"], "is not a time like"),
        (["1", "2026-11-20T10:00:00Z", "--format", "wmv"], "unknown format"),
        (["1", "2026-11-20T11:00:00Z", "2026-11-20T11:00:05Z"], "no recording"),
    ],
)
def test_export_archive_failures_are_clear_and_leave_no_file(cameras, tmp_path, args, message):
    out = tmp_path / "clip.mp4"
    with pytest.raises(CommandError, match=message):
        call_command("export_archive", *args, "--output", str(out))
    assert list(tmp_path.iterdir()) == []


def test_create_api_token_prints_only_a_working_key(users, cameras):
    stdout = io.StringIO()
    call_command("create_api_token", "alice", stdout=stdout)
    key = stdout.getvalue().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", key)
    assert token_client(key).get("/getcameras").status_code == 200
    assert ApiToken.objects.filter(user=users["alice"]).count() == 1
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "nobody")


def test_start_maintenance_is_idempotent_and_the_round_reschedules_itself(db, redis_conn):
    call_command("start_maintenance", stdout=io.StringIO())
    call_command("start_maintenance", stdout=io.StringIO())
    queue = django_rq.get_queue("maintenance")  # its own queue, which workers serve first
    assert queue.count == 1
    job = queue.jobs[0]
    assert job.func_name == "exports.maintenance.run_maintenance"
    run_worker(queue)
    job.refresh()
    assert set(job.return_value()) >= {"expired", "recovered", "requeued", "orphans", "indexed"}
    assert len(queue.scheduled_job_registry.get_job_ids()) == 1


def test_orphan_folders_are_removed_but_live_ones_kept(
    alice, exports_queue, django_capture_on_commit_callbacks, settings, tmp_path
):
    with django_capture_on_commit_callbacks(execute=True):
        task_id = alice.create(CameraId="1", From=psim(T0)).json()["ArchiveTaskId"]
    root = settings.EXPORTS_DIR
    (root / task_id).mkdir(parents=True)
    orphan = root / "084b56a5-bd49-4327-82db-9bc911f7ff96"
    orphan.mkdir()
    (root / "not-a-task").mkdir()
    assert maintenance.remove_orphan_folders() == 1
    assert (root / task_id).exists() and not orphan.exists() and (root / "not-a-task").exists()


def test_admin_lists_tasks_and_audit_and_shows_a_new_token_once(
    users, alice, exports_queue, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        alice.create(CameraId="1", From=psim(T0))
    admin = Client()
    admin.force_login(users["root"])
    assert admin.get("/admin/exports/exporttask/").status_code == 200
    task = ExportTask.objects.get()
    assert admin.get(f"/admin/exports/exporttask/{task.id}/change/").status_code == 200
    assert admin.get("/admin/exports/auditevent/").status_code == 200
    response = admin.post(
        "/admin/exports/exporttask/",
        {"action": "cancel_tasks", "_selected_action": [str(task.id)]},
        follow=True,
    )
    assert response.status_code == 200
    task.refresh_from_db()
    assert task.state == "Cancelled"
    assert AuditEvent.objects.get(task_id=task.id, action="cancel").username == "root"
    response = admin.post(
        "/admin/exports/apitoken/add/", {"user": users["bob"].pk, "name": "psim"}, follow=True
    )
    key = re.search(r"<code>([A-Za-z0-9_-]+)</code>", response.content.decode()).group(1)
    assert ApiToken.objects.for_key(key).get().user == users["bob"]
    assert key not in admin.get("/admin/exports/apitoken/").content.decode()
