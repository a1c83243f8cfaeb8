"""Case data (Name, Comment) and the legal hold (Keep): API, pages, admin, retention.

Real Redis, a real rq worker, real files; the same tests run on SQLite and PostgreSQL.
"""

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from exports import maintenance, tasks
from exports.models import AuditEvent, ExportTask
from tests import api_support
from tests.api_support import T0, psim, run_worker, token_client

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

pytestmark = pytest.mark.django_db

RANGE = {"CameraId": "1", "From": psim(T0), "To": psim(T0 + timedelta(seconds=2))}
SIX_FIELDS = {"CameraId", "From", "To", "ArchiveTaskId", "ErrorMessage", "State"}
# PSIM's status fields plus PackageUrl (the evidence package; additive, as INTERFACES allows).
STATUS_FIELDS = SIX_FIELDS | {"Percents", "Url", "PackageUrl"}


@pytest.fixture
def root(tokens):
    return token_client(tokens["root"])


@pytest.fixture
def keeper(users, tokens):
    """alice, now also allowed to set and release legal holds."""
    users["alice"].user_permissions.add(Permission.objects.get(codename="keep_exporttask"))
    return token_client(tokens["alice"])


def create_ready(api, queue, capture, **extra) -> ExportTask:
    with capture(execute=True):
        response = api.create(**RANGE, **extra)
    assert response.status_code == 200, response.json()
    run_worker(queue)
    task = ExportTask.objects.get(id=response.json()["ArchiveTaskId"])
    assert task.state == ExportTask.State.READY
    return task


def file_of(task) -> Path:
    return api_support.settings_exports_dir() / task.output_path


def keep(api, task, value):
    return api.post("/keeparchivetask", {"ArchiveTaskId": str(task.id), "Keep": value})


# -- API --------------------------------------------------------------------------------------


def test_a_psim_client_sending_no_case_data_sees_exactly_psims_fields(
    alice, exports_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = alice.create(**RANGE)
    assert set(created.json()) == SIX_FIELDS
    run_worker(exports_queue)
    status = alice.status(created.json()["ArchiveTaskId"]).json()
    assert set(status) == STATUS_FIELDS
    event = AuditEvent.objects.get(action="create")
    assert set(event.detail) == {"start", "end", "format", "source"}


def test_name_comment_and_keep_are_stored_answered_and_audited(
    root, users, exports_queue, django_capture_on_commit_callbacks
):
    comment = "Bicycle theft reported by the caretaker.\nPolice ref 2026/4711 — ß"
    with django_capture_on_commit_callbacks(execute=True):
        created = root.create(**RANGE, name="  Case 2026-0042 ", COMMENT=comment, Keep=True)
    assert created.status_code == 200
    assert set(created.json()) == SIX_FIELDS  # the create answer stays PSIM's six fields
    task = ExportTask.objects.get(id=created.json()["ArchiveTaskId"])
    assert (task.case_name, task.case_comment, task.keep) == ("Case 2026-0042", comment, True)
    assert task.kept_by == users["root"] and task.kept_at is not None
    run_worker(exports_queue)
    status = root.status(task.id).json()
    assert status["Name"] == "Case 2026-0042" and status["Comment"] == comment
    assert status["Keep"] is True and status["State"] == "ReadyForDownload"
    detail = AuditEvent.objects.get(task_id=task.id, action="create").detail
    assert detail["name"] == "Case 2026-0042" and detail["keep"] is True
    assert detail["comment"] == comment


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("Name", "x" * 201, "Name is 201 characters long; at most 200 are allowed"),
        ("Comment", "y" * 2001, "Comment is 2001 characters long; at most 2000 are allowed"),
        ("Name", 42, "Name must be a string"),
        ("Name", "two\nlines", "Name must not contain line breaks or control characters"),
        ("Comment", "bell\x07", "Comment must not contain control characters"),
        ("Comment", "\ud800", "Comment must be valid Unicode text"),
        ("Keep", "yes", "Keep must be true or false"),
        ("Keep", 1, "Keep must be true or false"),
    ],
)
def test_bad_case_data_is_a_400_in_the_contracts_shape_and_makes_no_task(
    root, field, value, message
):
    response = root.post(
        "/createarchivetask", raw=json.dumps({**RANGE, field: value}).encode()
    )
    assert response.status_code == 400
    body = response.json()
    assert body["ErrorMessage"] == message
    assert body["ArchiveTaskId"] is None and body["State"] == "Failed"
    assert body["CameraId"] == "1"
    assert not ExportTask.objects.exists()


def test_longest_allowed_case_data_and_nulls_are_accepted(
    root, exports_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = root.create(**RANGE, Name="n" * 200, Comment="c" * 2000, Keep=None)
    assert response.status_code == 200
    task = ExportTask.objects.get()
    assert len(task.case_name) == 200 and len(task.case_comment) == 2000 and not task.keep
    with django_capture_on_commit_callbacks(execute=True):
        assert root.create(**RANGE, Name=None, Comment=None).status_code == 200


def test_keep_without_the_permission_is_a_403_and_makes_no_task(alice):
    response = alice.create(**RANGE, Keep=True)
    assert response.status_code == 403
    assert "exports.keep_exporttask" in response.json()["ErrorMessage"]
    assert response.json()["ArchiveTaskId"] is None
    assert not ExportTask.objects.exists()


def test_keep_false_needs_no_permission(alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert alice.create(**RANGE, Keep=False, Name="Case 7").status_code == 200
    assert ExportTask.objects.get().case_name == "Case 7"


def test_the_hold_is_set_and_released_through_the_api_and_each_change_is_audited(
    keeper, alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    task = create_ready(keeper, exports_queue, django_capture_on_commit_callbacks)
    answer = keep(keeper, task, True)
    assert answer.status_code == 200 and answer.json()["Keep"] is True
    assert answer.json()["Name"] is None and answer.json()["Url"]
    assert keep(keeper, task, True).status_code == 200  # idempotent: no second event
    released = keep(keeper, task, False).json()
    # A task without case data and no hold answers PSIM's fields only again.
    assert "Keep" not in released and set(released) == STATUS_FIELDS
    actions = list(
        AuditEvent.objects.filter(task_id=task.id).order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["create", "start", "finish", "keep", "release"]
    assert AuditEvent.objects.get(task_id=task.id, action="keep").username == "alice"


def test_hold_changes_without_the_permission_or_of_unseen_tasks_are_refused(
    root, alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    task = create_ready(root, exports_queue, django_capture_on_commit_callbacks)
    refused = keep(alice, task, True)
    assert refused.status_code == 403
    assert refused.json()["ArchiveTaskId"] == str(task.id) and refused.json()["State"] == "ReadyForDownload"
    assert "exports.keep_exporttask" in refused.json()["ErrorMessage"]
    assert keep(bob, task, True).status_code == 404  # camera 1 is not bob's
    missing = root.post("/keeparchivetask", {"ArchiveTaskId": str(task.id)})
    assert missing.status_code == 400 and "Keep is required" in missing.json()["ErrorMessage"]
    assert root.post("/keeparchivetask", {"Keep": True}).status_code == 400
    task.refresh_from_db()
    assert not task.keep
    assert not AuditEvent.objects.filter(action__in=["keep", "release"]).exists()


def test_a_kept_export_cannot_be_deleted_until_released(
    root, exports_queue, django_capture_on_commit_callbacks
):
    task = create_ready(root, exports_queue, django_capture_on_commit_callbacks, Keep=True)
    path = file_of(task)
    refused = root.post("/deletearchivetask", {"ArchiveTaskId": str(task.id)})
    assert refused.status_code == 409
    assert "legal hold" in refused.json()["ErrorMessage"]
    assert refused.json()["State"] == "ReadyForDownload" and path.exists()
    keep(root, task, False)
    deleted = root.post("/deletearchivetask", {"ArchiveTaskId": str(task.id)})
    assert deleted.status_code == 200 and deleted.json()["State"] == "Deleted"
    assert not path.exists()
    assert keep(root, task, True).status_code == 409  # nothing left to keep


def test_a_kept_queued_export_cannot_be_cancelled(root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = root.create(**RANGE, Keep=True)
    task = ExportTask.objects.get(id=created.json()["ArchiveTaskId"])
    with pytest.raises(tasks.TaskRefused) as refused:
        tasks.cancel_task(task)
    assert refused.value.status == 409
    task.refresh_from_db()
    assert task.state == ExportTask.State.CREATED


# -- retention and the disk budget -------------------------------------------------------------


def test_retention_skips_a_kept_export_and_resumes_a_full_period_after_release(
    root, exports_queue, django_capture_on_commit_callbacks, settings
):
    task = create_ready(root, exports_queue, django_capture_on_commit_callbacks, Keep=True)
    long_ago = timezone.now() - timedelta(days=30)
    ExportTask.objects.filter(id=task.id).update(expires_at=long_ago)
    assert maintenance.expire_finished_exports() == 0
    task.refresh_from_db()
    assert task.state == ExportTask.State.READY and file_of(task).exists()

    # The signed Url of a kept file is not cut short by its (past) original expiry.
    url = root.status(task.id).json()["Url"]
    parts = urlsplit(url)
    assert Client().get(f"{parts.path}?{parts.query}").status_code == 200

    before = timezone.now()
    keep(root, task, False)
    task.refresh_from_db()
    retention = timedelta(hours=settings.PSIMEXPORT_RETENTION_HOURS)
    assert before + retention <= task.expires_at <= timezone.now() + retention
    assert maintenance.expire_finished_exports() == 0  # not at once
    assert maintenance.expire_finished_exports(now=task.expires_at + timedelta(seconds=1)) == 1
    task.refresh_from_db()
    assert task.state == ExportTask.State.DELETED and not file_of(task).exists()


def test_a_release_before_the_original_expiry_keeps_the_original_expiry(
    root, exports_queue, django_capture_on_commit_callbacks
):
    task = create_ready(root, exports_queue, django_capture_on_commit_callbacks, Keep=True)
    later = timezone.now() + timedelta(days=90)
    ExportTask.objects.filter(id=task.id).update(expires_at=later)
    keep(root, task, False)
    task.refresh_from_db()
    assert task.expires_at == later


def test_the_disk_budget_counts_kept_files_and_says_so(
    root, exports_queue, django_capture_on_commit_callbacks, settings
):
    task = create_ready(root, exports_queue, django_capture_on_commit_callbacks, Keep=True)
    settings.PSIMEXPORT_MAX_BYTES = task.size
    refused = root.create(**RANGE)
    assert refused.status_code == 507
    assert f"({task.size} bytes are under legal hold)" in refused.json()["ErrorMessage"]
    assert maintenance.expire_finished_exports(now=timezone.now() + timedelta(days=365)) == 0


# -- pages ------------------------------------------------------------------------------------


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def export_form(**extra) -> dict:
    return {
        "camera": "1", "start": "2026-11-20 10:00:00", "end": "2026-11-20 10:00:02",
        "format": "mp4", "action": "export", **extra,
    }


def test_the_export_form_takes_case_data_and_offers_the_hold_only_with_the_permission(
    users, django_capture_on_commit_callbacks
):
    alice = page_client(users["alice"])
    assert 'name="keep"' not in alice.get("/export/").content.decode()
    forged = alice.post("/export/", export_form(case_name="A", keep="on"))
    assert forged.status_code == 200 and "may not set a legal hold" in forged.content.decode()
    assert not ExportTask.objects.exists()

    root = page_client(users["root"])
    assert 'name="keep"' in root.get("/export/").content.decode()
    too_long = root.post("/export/", export_form(case_name="x" * 201))
    assert "Case name is 201 characters long" in too_long.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        done = root.post(
            "/export/", export_form(case_name="Case 9", case_comment="Gate\nopened", keep="on")
        )
    assert done.status_code == 302
    task = ExportTask.objects.get()
    assert (task.case_name, task.case_comment, task.keep) == ("Case 9", "Gate\nopened", True)


def test_history_shows_and_searches_case_data(users, cameras):
    def task(name, comment="", kept=False):
        return ExportTask.objects.create(
            camera=cameras[0], requested_from=T0, start=T0, end=T0 + timedelta(seconds=2),
            format="mp4", case_name=name, case_comment=comment, keep=kept,
            state=ExportTask.State.FAILED,
        )

    theft = task("Case 2026-0042 theft", "Bicycle at the gate")
    vandalism = task("Case 2026-0043", "Graffiti on the wall", kept=True)
    plain = task("")
    client = page_client(users["alice"])
    page = client.get("/tasks/").content.decode()
    assert "Case 2026-0042 theft" in page and "Legal hold" in page

    def found(**query):
        body = client.get("/tasks/", query).content.decode()
        return {t for t in (theft, vandalism, plain) if str(t.id) in body}

    assert found(q="bicycle") == {theft}
    assert found(q="2026 GRAFFITI") == {vandalism}  # every word, any case, name or comment
    assert found(q="case") == {theft, vandalism}
    assert found(kept="on") == {vandalism}
    assert found(q="nothing-like-it") == set()


def test_detail_page_sets_and_releases_the_hold_only_with_the_permission(
    users, root, exports_queue, django_capture_on_commit_callbacks
):
    task = create_ready(root, exports_queue, django_capture_on_commit_callbacks, Name="Case 5")
    alice = page_client(users["alice"])
    page = alice.get(f"/tasks/{task.id}/").content.decode()
    assert "Case 5" in page and "Keep (legal hold)" not in page
    assert alice.post(f"/tasks/{task.id}/keep/", {"keep": "1"}).status_code == 403
    task.refresh_from_db()
    assert not task.keep

    admin = page_client(users["root"])
    assert "Keep (legal hold)" in admin.get(f"/tasks/{task.id}/").content.decode()
    admin.post(f"/tasks/{task.id}/keep/", {"keep": "1"})
    task.refresh_from_db()
    assert task.keep and task.kept_by == users["root"]
    page = admin.get(f"/tasks/{task.id}/").content.decode()
    assert "Release the hold" in page and "not while under legal hold" in page
    assert f"/tasks/{task.id}/delete/" not in page  # no Delete button while kept

    refused = admin.post(f"/tasks/{task.id}/delete/", {"confirmed": "1"}, follow=True)
    assert "under legal hold" in refused.content.decode()
    task.refresh_from_db()
    assert task.state == ExportTask.State.READY

    admin.post(f"/tasks/{task.id}/keep/", {"keep": "0"})
    task.refresh_from_db()
    assert not task.keep and task.kept_by is None


# -- admin ------------------------------------------------------------------------------------


def staff(username, *codenames):
    user = User.objects.create_user(username, password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_admin_hold_actions_need_the_keep_permission(
    root, exports_queue, django_capture_on_commit_callbacks
):
    task = create_ready(root, exports_queue, django_capture_on_commit_callbacks, Name="Case 77")
    changelist = reverse("admin:exports_exporttask_changelist")

    viewer = page_client(staff("viewer", "view_exporttask"))
    listing = viewer.get(changelist, {"q": "case 77"}).content.decode()
    assert str(task.id)[:8] in listing and "set_hold" not in listing
    viewer.post(changelist, {"action": "set_hold", "_selected_action": [str(task.pk)]})
    task.refresh_from_db()
    assert not task.keep

    holder = page_client(staff("holder", "view_exporttask", "keep_exporttask", "delete_exporttask"))
    holder.post(changelist, {"action": "set_hold", "_selected_action": [str(task.pk)]})
    task.refresh_from_db()
    assert task.keep
    assert '<strong title="legal hold">held</strong> <span title="Case 77">' in holder.get(
        changelist
    ).content.decode()
    answer = holder.post(
        changelist, {"action": "delete_files", "_selected_action": [str(task.pk)]}, follow=True
    )
    assert "under legal hold" in answer.content.decode()
    holder.post(changelist, {"action": "release_hold", "_selected_action": [str(task.pk)]})
    task.refresh_from_db()
    assert not task.keep and task.state == ExportTask.State.READY
    assert list(
        AuditEvent.objects.filter(task_id=task.id, action__in=["keep", "release"])
        .order_by("seq").values_list("action", "username")
    ) == [("keep", "holder"), ("release", "holder")]


def test_case_data_answers_match_the_openapi_document(
    root, alice, exports_queue, django_capture_on_commit_callbacks
):
    from tests.test_openapi import check

    spec = Client().get("/openapi.json").json()
    body = spec["paths"]["/createarchivetask"]["post"]["requestBody"]["content"]
    assert {"Name", "Comment", "Keep"} <= set(body["application/json"]["schema"]["properties"])
    with django_capture_on_commit_callbacks(execute=True):
        created = root.create(**RANGE, Name="Case 1", Comment="c", Keep=True)
    check(spec, "post", "/createarchivetask", created)
    check(spec, "post", "/createarchivetask", alice.create(**RANGE, Keep=True))  # 403
    check(spec, "post", "/createarchivetask", root.create(**RANGE, Name="x" * 201))  # 400
    run_worker(exports_queue)
    task = ExportTask.objects.get(id=created.json()["ArchiveTaskId"])
    check(spec, "get", "/getarchivetaskstatus", root.status(task.id))
    check(spec, "post", "/deletearchivetask", root.post("/deletearchivetask", {"ArchiveTaskId": str(task.id)}))
    check(spec, "post", "/keeparchivetask", keep(alice, task, False))  # 403
    check(spec, "post", "/keeparchivetask", keep(root, task, False))
    check(spec, "post", "/keeparchivetask", root.post("/keeparchivetask", {"ArchiveTaskId": "x"}))
