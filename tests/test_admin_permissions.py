"""Each admin action and page needs its own permission, not just the staff flag."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from exports.models import ApiToken, AuditEvent, Camera, ExportTask

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


def staff(username, *codenames):
    user = User.objects.create_user(username, password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def task(tmp_path):
    camera = Camera.objects.create(camera_id="1", archive_path=str(tmp_path))
    task = ExportTask.objects.create(
        camera=camera, requested_from=T0, start=T0, end=T0 + timedelta(seconds=5), format="mp4"
    )
    AuditEvent.objects.create(task_id=task.id, camera_id="1", action="create", username="x")
    return task


def run_action(client, user, action, task):
    client.force_login(user)
    return client.post(
        reverse("admin:exports_exporttask_changelist"),
        {"action": action, "_selected_action": [str(task.pk)]},
        follow=True,
    )


@pytest.mark.parametrize("action", ["cancel_tasks", "delete_files"])
def test_staff_who_may_only_view_tasks_cannot_cancel_or_delete(client, task, action):
    viewer = staff("viewer", "view_exporttask")
    assert run_action(client, viewer, action, task).status_code == 200
    task.refresh_from_db()
    assert task.state == ExportTask.State.CREATED


def test_cancel_needs_change_and_delete_files_needs_delete_permission(client, task):
    canceller = staff("canceller", "view_exporttask", "change_exporttask")
    run_action(client, canceller, "delete_files", task)
    task.refresh_from_db()
    assert task.state == ExportTask.State.CREATED
    run_action(client, canceller, "cancel_tasks", task)
    task.refresh_from_db()
    assert task.state == ExportTask.State.CANCELLED
    assert AuditEvent.objects.filter(action="cancel", username="canceller").exists()


def test_staff_may_mint_a_token_only_for_themselves(client):
    root = User.objects.create_superuser("root", password="pw-for-tests-only")
    minter = staff("minter", "add_apitoken", "view_apitoken")
    client.force_login(minter)
    url = reverse("admin:exports_apitoken_add")
    response = client.post(url, {"user": root.pk, "name": "stolen"})
    assert response.status_code == 200  # the form again, with an error
    assert not ApiToken.objects.filter(user=root).exists()
    client.post(url, {"user": minter.pk, "name": "mine"})
    assert ApiToken.objects.filter(user=minter).count() == 1


def test_staff_see_only_their_own_tokens_unless_superuser(client):
    root = User.objects.create_superuser("root", password="pw-for-tests-only")
    ApiToken.issue(root, name="root-token")
    minter = staff("minter", "add_apitoken", "view_apitoken", "change_apitoken")
    ApiToken.issue(minter, name="minter-token")
    client.force_login(minter)
    text = client.get(reverse("admin:exports_apitoken_changelist")).content.decode()
    assert "minter-token" in text and "root-token" not in text
    client.force_login(root)
    text = client.get(reverse("admin:exports_apitoken_changelist")).content.decode()
    assert "minter-token" in text and "root-token" in text


def test_audit_trail_needs_the_view_permission(client, task):
    client.force_login(staff("plain"))
    assert client.get(reverse("admin:exports_auditevent_changelist")).status_code == 403
    client.force_login(staff("auditor", "view_auditevent"))
    assert client.get(reverse("admin:exports_auditevent_changelist")).status_code == 200


@pytest.mark.parametrize("path", ["/admin/rq/", "/admin/rq/queues/0/", "/admin/rq/stats.json"])
def test_rq_queues_are_for_superusers_only(client, path, redis_conn):
    client.force_login(staff("plain", "view_exporttask", "change_exporttask"))
    assert client.get(path).status_code in (302, 403)
    client.force_login(User.objects.create_superuser("root", password="pw-for-tests-only"))
    assert client.get(path).status_code == 200


def test_rq_dashboard_inside_the_admin_is_for_superusers_only(client, redis_conn):
    path = reverse("admin:django_rq_dashboard_changelist")
    client.force_login(staff("plain", "view_exporttask"))
    assert client.get(path).status_code in (302, 403)
    assert b"django_rq" not in client.get(reverse("admin:index")).content
    client.force_login(User.objects.create_superuser("root", password="pw-for-tests-only"))
    assert client.get(path).status_code == 200
