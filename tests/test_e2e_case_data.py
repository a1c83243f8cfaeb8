"""In a real browser: an operator who may set legal holds exports with case data and a hold,
finds it in the history by its case, and releases the hold on the detail page."""

from datetime import timedelta

from django.contrib.auth.models import Permission

from exports.models import AuditEvent, ExportTask
from tests import test_e2e_pages as e2e
from tests.test_e2e_pages import expect_text, fill_export, log_in, newest_task, shot, submit
from tests.waiting import wait_until

recordings, worker, site, browser, page = e2e.recordings, e2e.worker, e2e.site, e2e.browser, e2e.page
pytestmark = e2e.pytestmark


def test_operator_exports_with_a_case_and_a_hold_finds_it_and_releases_it(site, page):
    url, blocks = site["url"], site["blocks"]
    site["user"].user_permissions.add(Permission.objects.get(codename="keep_exporttask"))
    log_in(page, url)

    page.goto(url + "/export/")
    page.locator("#id_camera_0").check()
    start = blocks[2][0] + timedelta(minutes=1)
    fill_export(page, start, start + timedelta(seconds=20))
    page.get_by_label("Case name").fill("Case 2026-0042 bicycle theft")
    page.get_by_label("Comment").fill("Reported by the caretaker.\nPolice ref 4711.")
    page.get_by_label("Legal hold: keep this export until released").check()
    shot(page, "export-form-case")
    submit(page, page.get_by_role("button", name="Export", exact=True))
    task = newest_task()
    assert (task.case_name, task.keep) == ("Case 2026-0042 bicycle theft", True)
    wait_until(
        lambda: ExportTask.objects.get(id=task.id).state == ExportTask.State.READY,
        120, "the export",
    )

    page.goto(url + "/tasks/")
    page.get_by_label("Case").fill("BICYCLE 4711")
    submit(page, page.get_by_role("button", name="Filter"))
    row = page.locator(f"#task-{task.id}")
    expect_text(row, "Case 2026-0042 bicycle theft")
    expect_text(row, "Legal hold")
    assert row.get_by_role("button", name="Delete").count() == 0
    shot(page, "tasks-case-search")

    row.get_by_role("link", name="Front door").click()
    page.wait_for_url(f"{url}/tasks/{task.id}/")
    expect_text(page.locator("dl.case"), "Kept until released")
    expect_text(page.locator("dl.case"), "Police ref 4711.")
    shot(page, "task-detail-hold")
    submit(page, page.get_by_role("button", name="Release the hold"))
    expect_text(page.locator(".messages"), "released from legal hold")
    assert page.get_by_role("button", name="Delete").count() == 1
    task.refresh_from_db()
    assert not task.keep
    assert AuditEvent.objects.filter(task_id=task.id, action="release", username="operator").exists()
