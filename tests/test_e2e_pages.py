"""The pages in a real browser (Playwright driving Debian's Chromium) against a live server,
a real Redis and an rq worker thread that runs the exports.

Screenshots of every page go to test-artifacts/. With PSIMEXPORT_UPDATE_SCREENSHOTS=1 the
cameras page, the form and the history also replace the README's docs/screenshots/ (off by
default, so a test run leaves the work tree clean).
"""

import logging
import os
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import django_rq
import pytest
from django.contrib.auth.models import User
from django.db import connection
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty

from exports.archive import index_camera
from exports.media import synth
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import AuditEvent, Camera, ExportTask, UserPreference
from exports.tasks import record_audit

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
ZONE = "Europe/Berlin"
PASSWORD = "browser-secret-pw"
SPEC = SegmentSpec(width=160, height=120, fps=Fraction(1), acodec=None)
SEGMENT = timedelta(minutes=5)
State = ExportTask.State


def _blocks(now):
    """Recorded blocks of the demo-like camera over the last hours, with gaps between them."""
    base = now.replace(second=0, microsecond=0)
    return [
        (base - timedelta(hours=7), base - timedelta(hours=5, minutes=30)),
        (base - timedelta(hours=3, minutes=40), base - timedelta(hours=2, minutes=50)),
        (base - timedelta(minutes=60), base - timedelta(minutes=5)),
    ]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-recordings")
    blocks = _blocks(datetime.now(UTC))
    for first, last in blocks:
        start = first
        while start < last:
            write_segment(frigate_path(root, "front_door", start), start, SEGMENT.total_seconds(), SPEC)
            start += SEGMENT
    old = time.time() - 60
    for path in root.rglob("*.mp4"):
        os.utime(path, (old, old))
    return root, blocks


class ThreadWorker(SimpleWorker):
    """rq's in-process worker; signals belong to the main thread (pytest's), so job timeouts
    use a timer instead of SIGALRM."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self):
        pass


class WorkerThread(threading.Thread):
    """Runs queued exports in burst loops until stopped; can be paused to keep tasks queued."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.running = threading.Event()
        self.running.set()
        self.idle = threading.Event()  # set by the thread when paused and between bursts

    def pause(self):
        """Return once no burst is running, so a job queued from now on stays queued (a burst
        that began just before would otherwise take it, on a slow machine)."""
        self.running.clear()
        self.idle.clear()
        assert self.idle.wait(timeout=120), "the worker thread never paused"

    def resume(self):
        self.running.set()

    def run(self):
        queue = django_rq.get_queue("exports")
        try:
            while not self.stopped.is_set():
                if self.running.is_set():
                    worker = ThreadWorker([queue], connection=queue.connection, name=f"e2e-{uuid.uuid4().hex[:8]}")
                    worker.work(burst=True, with_scheduler=False)
                else:
                    self.idle.set()
                time.sleep(0.2)
        finally:
            connection.close()


@pytest.fixture
def worker(redis_conn):
    logging.getLogger("rq.worker").setLevel(logging.WARNING)  # one line per burst otherwise
    thread = WorkerThread()
    thread.start()
    yield thread
    thread.stopped.set()
    thread.join(timeout=30)


@pytest.fixture
def site(recordings, live_server, settings, worker):
    root, blocks = recordings
    camera = Camera.objects.create(
        camera_id="1", name="Front door", archive_path=str(root), source_name="front_door",
        layout="frigate",
    )
    index_camera(camera)
    user = User.objects.create_user("operator", password=PASSWORD)
    camera.allowed_users.add(user)
    UserPreference.objects.create(user=user, time_zone=ZONE)
    return {"url": live_server.url, "camera": camera, "blocks": blocks, "user": user}


@pytest.fixture(scope="module")
def browser():
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True, locale="en-GB",
        timezone_id=ZONE,
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


def shot(page, name, docs=False):
    page.evaluate("document.activeElement && document.activeElement.blur()")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs and os.environ.get("PSIMEXPORT_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SHOTS / f"{name}.png"))


def local(moment):
    return moment.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M:%S")


def log_in(page, url):
    page.goto(url + "/")
    assert "/accounts/login/" in page.url
    shot(page, "login")
    page.get_by_label("User name").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(url + "/")


def row(page, task):
    return page.locator(f"#task-{task.id}")


def submit(page, button):
    """Click a form button and wait for the page it leads to (often the same URL)."""
    with page.expect_navigation():
        button.click()
    page.wait_for_load_state()


def newest_task():
    return ExportTask.objects.order_by("-created_at").first()


def fill_export(page, start, end):
    page.locator("#id_start").fill(local(start))
    page.locator("#id_end").fill(local(end))


def test_operator_exports_watches_progress_downloads_cancels_retries_deletes(site, page, worker, tmp_path):
    url, blocks = site["url"], site["blocks"]
    log_in(page, url)

    # The cameras page: the demo-like camera with its three recorded blocks on the timeline.
    card = page.locator("#camera-1")
    assert card.locator(".track .rec").count() == 3
    # The two holes between the blocks; not the hours before the first block, not the live edge.
    assert card.locator(".track .gap").count() == 2
    expect_text(card.locator(".gap-count"), "2 gaps")
    assert card.locator(".gaps-list li").count() == 2
    page.wait_for_function("document.querySelector('#camera-1 img.thumb').naturalWidth > 0")
    shot(page, "cameras", docs=True)

    # Clicking the newest block opens the review page at that time.
    track = card.locator(".track")
    box = track.bounding_box()
    window_start = int(page.locator("#camera-1 .timeline").get_attribute("data-start")) / 1000
    window_end = int(page.locator("#camera-1 .timeline").get_attribute("data-end")) / 1000
    target = blocks[2][0] + timedelta(minutes=30)
    fraction = (target.timestamp() - window_start) / (window_end - window_start)
    page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_url("**/cameras/1/review/?t=*")
    opened_at = datetime.fromisoformat(page.url.split("?t=")[1].replace("%3A", ":").replace("Z", "+00:00"))
    assert abs(opened_at - target) < timedelta(minutes=2)
    page.goto(f"{url}/export/?camera=1")
    assert page.locator("input[name=camera][value='1']").is_checked()

    # A range with seconds, in the operator's zone; the preview shows UTC and what is recorded.
    start = blocks[2][0] + timedelta(minutes=12, seconds=37)
    end = start + timedelta(seconds=12)
    fill_export(page, start, end)
    page.locator("#id_format").select_option("mp4")
    # The preview of the prefilled range is already there: wait for the one of this range.
    new_preview = wait_for_preview(page, start)
    assert "12 s" in new_preview.locator(".recorded-seconds").inner_text()
    assert start.strftime("%Y-%m-%d %H:%M:%S UTC") in page.locator("#start-utc").inner_text()
    shot(page, "export-form", docs=True)

    # Submit with the worker paused, so the history page shows it queued, then let it run.
    worker.pause()
    page.get_by_role("button", name="Export", exact=True).click()
    page.wait_for_url(url + "/tasks/")
    task = newest_task()
    assert (task.start, task.end, task.format) == (start, end, "mp4")
    assert row(page, task).get_attribute("data-active") == "1"
    page.evaluate("window.__sameDocument = true")
    worker.resume()
    page.wait_for_function(
        f"document.querySelector('#task-{task.id} progress').value === 100", timeout=60_000
    )
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    expect_text(row(page, task), "100 %")
    shot(page, "tasks-first-export")

    # Download from the history and decode it: the first frame is the one showing at From.
    with page.expect_download() as download_info:
        row(page, task).get_by_role("link", name="Download").click()
    saved = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    with av.open(str(saved)) as container:
        frames = [synth.frame_wall_time(f.to_ndarray(format="gray")) for f in container.decode(video=0)]
    assert frames[0] == start and len(frames) == 12

    # The detail page shows everything, with an inline player fed by the ranged download.
    page.goto(f"{url}/tasks/{task.id}/")
    expect_text(page.locator("article.detail"), task.sha256)
    page.wait_for_function("document.querySelector('video').readyState >= 1", timeout=30_000)
    shot(page, "task-detail")
    # The history's download is the one download; the player's requests are one view.
    audited = AuditEvent.objects.filter(task_id=task.id)
    assert audited.filter(action="download").count() == 1
    assert audited.filter(action="view").count() == 1

    # Cancel an export that is waiting for the worker, then retry it and watch it finish.
    worker.pause()
    page.goto(f"{url}/export/?camera=1")
    fill_export(page, blocks[1][0] + timedelta(seconds=3), blocks[1][0] + timedelta(minutes=20, seconds=3))
    page.get_by_role("button", name="Export", exact=True).click()
    page.wait_for_url(url + "/tasks/")
    long_task = newest_task()
    # Cancel asks first (a dialog with JavaScript): dismissing it changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    row(page, long_task).get_by_role("button", name="Cancel").click()
    assert page.url == url + "/tasks/"
    assert ExportTask.objects.get(id=long_task.id).state == State.CREATED
    page.once("dialog", lambda dialog: dialog.accept())
    submit(page, row(page, long_task).get_by_role("button", name="Cancel"))
    expect_text(row(page, long_task), "Cancelled")
    long_task.refresh_from_db()
    assert long_task.state == State.CANCELLED

    submit(page, row(page, long_task).get_by_role("button", name="Retry"))
    expect_text(row(page, long_task), "Created")
    worker.resume()
    page.wait_for_function(
        f"document.querySelector('#task-{long_task.id} progress').value === 100", timeout=90_000
    )
    long_task.refresh_from_db()
    assert long_task.state == State.READY

    # Delete the first export: its file goes, the row says Deleted.
    page.once("dialog", lambda dialog: dialog.accept())
    submit(page, row(page, task).get_by_role("button", name="Delete"))
    expect_text(row(page, task), "Deleted")
    task.refresh_from_db()
    assert task.state == State.DELETED

    shot(page, "tasks", docs=True)

    # A phone-sized history for the artefacts.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/tasks/")
    # "100 %" stays on one line, beside its bar.
    assert page.evaluate("[...document.querySelectorAll('.pct')].every(e => e.getClientRects().length === 1)")
    shot(page, "tasks-phone")


def test_bad_range_shows_errors_next_to_the_fields(site, page):
    url, blocks = site["url"], site["blocks"]
    log_in(page, url)
    page.goto(f"{url}/export/?camera=1")
    start = blocks[2][0] + timedelta(minutes=5)
    fill_export(page, start, start - timedelta(seconds=30))
    page.wait_for_function("document.querySelector('#preview .errors')")
    page.get_by_role("button", name="Export", exact=True).click()
    end_field = page.locator(".field.invalid", has=page.locator("#id_end"))
    expect_text(end_field, "Must be after From")
    shot(page, "export-form-errors")
    assert not ExportTask.objects.exists()

    # On a phone the pages reflow to one column, nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for path, name in (("/", "cameras-phone"), ("/export/?camera=1", "export-form-phone")):
        page.goto(url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, name)


def wait_for_preview(page, start):
    """The preview for a range starting at `start` (an older one may still be on the page)."""
    isoz = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    preview = page.locator(f'#preview .preview-row[data-start="{isoz}"]')
    preview.wait_for()
    return preview


def expect_text(locator, text):
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text)



def test_admin_lists_are_not_cut_off_on_a_laptop_or_a_phone(site, page):
    url, camera = site["url"], site["camera"]
    User.objects.create_superuser("chief", password=PASSWORD)
    now = datetime.now(UTC).replace(microsecond=0)
    for number in range(3):
        task = ExportTask.objects.create(
            camera=camera, requested_from=now, start=now - timedelta(seconds=17 + number),
            end=now, format="mp4", requested_by=site["user"], source=ExportTask.Source.API,
            state=State.READY, percents=100, size=123_456_789,
            case_name="Case 2026-0042 bicycle theft at the north gate" if number else "",
            keep=number == 1,
        )
        record_audit(task, AuditEvent.Action.DOWNLOAD, site["user"], "2001:db8::1234:5678:9abc")
    page.goto(url + "/admin/login/?next=/admin/exports/exporttask/")
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/exports/exporttask/")
    assert page.title().startswith("Export tasks |") and "/admin/rq/" not in page.title()
    for width, height, name in ((1366, 768, "admin-tasks-1366"), (390, 844, "admin-tasks-phone")):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(url + "/admin/exports/exporttask/")
        shot(page, name)
        measure = page.evaluate(
            """() => {
              const table = document.querySelector('#result_list');
              const box = table.closest('.results').getBoundingClientRect();
              const right = (name) => table.querySelector('thead th.column-' + name).getBoundingClientRect().right;
              return {page: document.documentElement.scrollWidth, box: box.right,
                      last: right('created_at'), state: right('state')};
            }"""
        )
        assert measure["page"] <= width, measure  # the page itself never scrolls sideways
        # Every column fits a laptop; on a phone at least what tells tasks apart (id, camera,
        # range, state) is on screen, the rest is on each task's page.
        assert measure["last" if width > 1000 else "state"] <= measure["box"] + 1, measure
    # Times with seconds: a 17 s export does not show the same start and end.
    assert page.locator("td.field-time_range").first.inner_text().count(":") == 4

    # The other lists fit a laptop too.
    page.set_viewport_size({"width": 1366, "height": 768})
    for path in ("camera", "auditevent", "segment"):
        page.goto(f"{url}/admin/exports/{path}/")
        fits = page.evaluate(
            """() => {
              const table = document.querySelector('#result_list');
              const box = table.closest('.results').getBoundingClientRect();
              const last = [...table.querySelectorAll('thead th')].pop().getBoundingClientRect();
              return last.right <= box.right + 1;
            }"""
        )
        shot(page, f"admin-{path}-1366")
        assert fits, path


def test_batch_header_and_zip_link_follow_the_exports_live(site, page, worker):
    url, blocks, first = site["url"], site["blocks"], site["camera"]
    second = Camera.objects.create(
        camera_id="2", name="Back door", archive_path=first.archive_path,
        source_name="front_door", layout="frigate",
    )
    index_camera(second)
    second.allowed_users.add(site["user"])
    log_in(page, url)
    start = blocks[2][0] + timedelta(minutes=3, seconds=5)

    worker.pause()
    page.goto(f"{url}/export/?camera=1&camera=2")
    fill_export(page, start, start + timedelta(seconds=4))
    page.get_by_role("button", name="Export", exact=True).click()
    page.wait_for_url("**/tasks/?batch=*")
    head = page.locator("tr.batch-head")
    expect_text(head, "Batch of 2 · 0 ready")
    assert head.get_by_role("link", name="Download all as zip").count() == 0
    page.evaluate("window.__sameDocument = true")

    worker.resume()
    expect_text(page.locator("tr.batch-head"), "Batch of 2 · 2 ready")
    zip_link = page.locator("tr.batch-head").get_by_role("link", name="Download all as zip")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
    with page.expect_download() as download_info:
        zip_link.click()
    saved = Path(download_info.value.path())
    with zipfile.ZipFile(saved) as archive_zip:
        assert len(archive_zip.namelist()) == 2
