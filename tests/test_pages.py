"""The web pages: login, permissions (404, invisible), CSRF, timeline, thumbnail, export form,
preview, history with pagination/filters/live progress, actions, downloads and batch zips."""

import html
import io
import os
import re
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import av
import django_rq
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from exports import thumbnails
from exports.archive import index_camera
from exports.media import synth
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import AuditEvent, Camera, ExportTask, UserPreference
from exports.timeline import build_timeline, day_window

pytestmark = pytest.mark.django_db

SPEC = SegmentSpec(width=160, height=120, fps=Fraction(25), acodec=None)
# Recent, so the cameras page's "last 24 hours" shows it; whole seconds, so names are exact.
BASE = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
SECOND = timedelta(seconds=1)
PASSWORD = "pages-secret-pw"
State = ExportTask.State


def make_recordings(root, base=BASE):
    """Camera "1": [base, base+4 s) and [base+6 s, base+8 s) — a 2 s gap; camera "2": 2 s."""
    for offset in (0, 2, 6):
        start = base + offset * SECOND
        write_segment(frigate_path(root, "1", start), start, 2, SPEC)
    write_segment(frigate_path(root, "2", base), base, 2, SPEC)
    old = datetime.now().timestamp() - 3600  # finished files, as the indexer expects
    for path in root.rglob("*.mp4"):
        os.utime(path, (old, old))
    return root


@pytest.fixture(scope="session")
def recordings(tmp_path_factory):
    return make_recordings(tmp_path_factory.mktemp("page-recordings"))


@pytest.fixture
def cameras(recordings):
    made = []
    for camera_id, name in (("1", "Entrance"), ("2", "Yard")):
        camera = Camera.objects.create(
            camera_id=camera_id, name=name, archive_path=str(recordings), layout="frigate"
        )
        index_camera(camera)
        camera.refresh_from_db()
        made.append(camera)
    return made


@pytest.fixture
def users(cameras):
    """alice may export camera 1, bob camera 2."""
    alice = User.objects.create_user("alice", password=PASSWORD)
    bob = User.objects.create_user("bob", password=PASSWORD)
    cameras[0].allowed_users.add(alice)
    cameras[1].allowed_users.add(bob)
    return {"alice": alice, "bob": bob}


def logged_in(user, csrf=False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def alice(users):
    return logged_in(users["alice"])


def run_worker():
    queue = django_rq.get_queue("exports")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def make_task(camera, user=None, **fields) -> ExportTask:
    values = {
        "camera": camera,
        "requested_from": BASE,
        "start": BASE,
        "end": BASE + 4 * SECOND,
        "format": "mp4",
        "requested_by": user,
        "source": ExportTask.Source.PAGE,
    }
    values.update(fields)
    return ExportTask.objects.create(**values)


def csrf_token(client, url) -> str:
    page = client.get(url)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert match, "form without a CSRF token"
    return match.group(1).decode()


# -- login and permissions --------------------------------------------------------------------

PAGES = ["/", "/export/", "/tasks/", "/preferences/", "/export/preview/", "/tasks/progress/"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_requires_login(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_task_pages_and_thumbnail_require_login(cameras, users):
    task = make_task(cameras[0])
    for url in (
        reverse("task-detail", args=[task.id]),
        reverse("task-download", args=[task.id]),
        reverse("camera-thumbnail", args=["1"]),
        reverse("batch-zip", args=[uuid.uuid4()]),
    ):
        response = Client().get(url)
        assert response.status_code == 302, url
        assert reverse("login") in response["Location"]


def test_login_form_has_csrf_and_logs_in(users):
    client = Client(enforce_csrf_checks=True)
    assert client.post(reverse("login"), {"username": "alice", "password": PASSWORD}).status_code == 403
    token = csrf_token(client, reverse("login"))
    page = client.get(reverse("login"))
    assert b'<label for="id_username">' in page.content
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == reverse("cameras")
    assert client.get("/").status_code == 200


def test_wrong_password_shows_an_error(users):
    response = Client().post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"errors" in response.content


def test_logout_is_a_csrf_protected_post(users):
    client = logged_in(users["alice"], csrf=True)
    assert client.post(reverse("logout")).status_code == 403
    token = csrf_token(client, "/")
    assert client.post(reverse("logout"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/").status_code == 302


# -- cameras page -----------------------------------------------------------------------------


def test_cameras_page_lists_only_exportable_cameras_with_coverage(alice):
    page = alice.get("/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "Entrance" in text and "Yard" not in text
    assert reverse("camera-thumbnail", args=["1"]) in text
    # first recording shown in the user's zone (UTC by default), to the second
    assert BASE.strftime("%Y-%m-%d %H:%M:%S") in text


def test_timeline_shows_recorded_spans_and_the_gap(alice):
    text = alice.get("/").content.decode()
    recorded = re.findall(r'class="rec" style="left:([\d.]+)%;width:([\d.]+)%"', text)
    gaps = re.findall(r'class="gap" style="left:([\d.]+)%;width:([\d.]+)%" title="([^"]+)"', text)
    assert len(recorded) == 2  # [base, +4 s) and [+6 s, +8 s)
    (left1, width1), (left2, width2) = [(float(a), float(b)) for a, b in recorded]
    day = 24 * 3600
    assert width1 == pytest.approx(4 / day * 100, abs=0.002)
    assert left2 - left1 == pytest.approx(6 / day * 100, abs=0.002)
    two_second_gap = (BASE + 4 * SECOND).strftime("%H:%M:%S")
    assert any(two_second_gap in title for _l, _w, title in gaps)
    # a click target around each quarter hour leads to the export form, prefilled
    assert re.search(r'href="/export/\?camera=1&amp;from=[\dT:-]+Z&amp;to=[\dT:-]+Z"', text)


def test_timeline_of_a_chosen_day_in_the_user_zone(alice, users):
    UserPreference.objects.create(user=users["alice"], time_zone="Asia/Tokyo")
    local_day = BASE.astimezone(ZoneInfo("Asia/Tokyo")).date()
    text = alice.get("/", {"day": local_day.isoformat()}).content.decode()
    assert len(re.findall(r'class="rec"', text)) == 2
    other_day = local_day - timedelta(days=3)
    text = alice.get("/", {"day": other_day.isoformat()}).content.decode()
    assert 'class="rec"' not in text
    assert "Asia/Tokyo" in text


def test_timeline_geometry_on_a_dst_day():
    zone = ZoneInfo("Europe/Berlin")
    start, end = day_window(datetime(2026, 3, 29).date(), zone)
    assert (end - start) == timedelta(hours=23)
    recorded = [(start + timedelta(hours=1), start + timedelta(hours=2))]
    timeline = build_timeline(
        recorded, start, end, zone, now=end + timedelta(days=1),
        first_recording=start - timedelta(days=1),
    )
    assert timeline.recorded[0].width == pytest.approx(100 / 23, abs=0.001)
    assert [gap.seconds for gap in timeline.gaps] == [3600, 21 * 3600]
    assert [tick.label for tick in timeline.ticks][:3] == ["00:00", "03:00", "06:00"]


def test_timeline_gaps_leave_out_before_the_first_recording_and_the_live_edge():
    zone = ZoneInfo("UTC")
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    start, end = now - timedelta(hours=24), now + timedelta(minutes=1)
    first = now - timedelta(hours=2)
    recorded = [(first, now - timedelta(hours=1)), (now - timedelta(minutes=30), now - timedelta(seconds=20))]
    timeline = build_timeline(
        recorded, start, end, zone, now, first_recording=first, live_edge=timedelta(minutes=1)
    )
    # Only the half hour between the two recordings: not the 22 h before the camera's first
    # recording, not the 20 s of the segment being written.
    assert [(gap.start, gap.seconds) for gap in timeline.gaps] == [(now - timedelta(hours=1), 1800)]
    # A camera that stopped longer ago than the live edge does have a trailing gap.
    stale = build_timeline(
        recorded, start, end, zone, now + timedelta(minutes=10), first_recording=first,
        live_edge=timedelta(minutes=1),
    )
    assert len(stale.gaps) == 2


def test_thumbnail_is_the_latest_frame_and_cached(alice, cameras, settings, tmp_path, monkeypatch):
    settings.DATA_DIR = tmp_path
    response = alice.get(reverse("camera-thumbnail", args=["1"]))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    jpeg = b"".join(response.streaming_content)
    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0))
    # the newest segment starts at base+6 s and lasts 2 s: its last frame is 1/25 s before +8 s
    shown = synth.frame_wall_time(frame.to_ndarray(format="gray"))
    assert abs(shown - (BASE + 8 * SECOND - timedelta(seconds=1 / 25))) < timedelta(milliseconds=60)

    calls = []
    monkeypatch.setattr(thumbnails, "last_frame_jpeg", lambda *a: calls.append(a) or b"")
    assert alice.get(reverse("camera-thumbnail", args=["1"])).status_code == 200
    assert calls == []  # served from the cache, not decoded again


def test_another_users_camera_thumbnail_is_404(alice):
    assert alice.get(reverse("camera-thumbnail", args=["2"])).status_code == 404
    assert alice.get(reverse("camera-thumbnail", args=["nope"])).status_code == 404


# -- export form ------------------------------------------------------------------------------


def test_form_prefilled_from_a_timeline_link_in_the_user_zone(alice, users):
    UserPreference.objects.create(user=users["alice"], time_zone="Europe/Berlin")
    start = datetime(2026, 11, 20, 10, 0, 13, tzinfo=UTC)
    page = alice.get("/export/", {"camera": "1", "from": "2026-11-20T10:00:13Z", "to": "2026-11-20T10:00:41Z"})
    text = page.content.decode()
    assert 'value="2026-11-20 11:00:13"' in text  # Berlin is UTC+1 in November
    assert 'value="2026-11-20 11:00:41"' in text
    assert "2026-11-20 10:00:13 UTC" in text  # the UTC equivalent next to the field
    assert 'type="text"' in text and 'type="datetime-local"' not in text  # 24-hour everywhere
    assert re.search(r'value="1"[^>]*checked|checked[^>]*value="1"', text)
    assert start  # the instant round-trips through the zone


def test_export_post_needs_csrf(users, exports_queue):
    client = logged_in(users["alice"], csrf=True)
    data = {"camera": "1", "start": local(BASE), "end": local(BASE + 3 * SECOND), "format": "mp4"}
    assert client.post("/export/", data).status_code == 403
    assert not ExportTask.objects.exists()
    data["csrfmiddlewaretoken"] = csrf_token(client, "/export/")
    assert client.post("/export/", data).status_code == 302
    assert ExportTask.objects.count() == 1


def local(moment, zone="UTC"):
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M:%S")


def test_export_creates_a_task_from_local_times_with_seconds(
    alice, users, exports_queue, django_capture_on_commit_callbacks
):
    UserPreference.objects.create(user=users["alice"], time_zone="America/New_York")
    start, end = BASE + 1 * SECOND, BASE + 7 * SECOND
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            "/export/",
            {"camera": "1", "start": local(start, "America/New_York"),
             "end": local(end, "America/New_York"), "format": "mkv"},
        )
    assert response.status_code == 302 and response["Location"] == reverse("tasks")
    task = ExportTask.objects.get()
    assert (task.start, task.end, task.format) == (start, end, "mkv")
    assert task.source == ExportTask.Source.PAGE and task.requested_by == users["alice"]
    assert task.remote_addr == "127.0.0.1"
    assert exports_queue.fetch_job(str(task.id)) is not None
    assert AuditEvent.objects.filter(task_id=task.id, action="create").exists()


def test_format_defaults_to_the_setting(alice, settings):
    settings.PSIMEXPORT_CONTAINER_FORMAT = "mov"
    assert re.search(r'<option value="mov" selected>', alice.get("/export/").content.decode())


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"start": BASE + 5 * SECOND, "end": BASE + 2 * SECOND}, "end", "Must be after From"),
        ({"start": BASE, "end": BASE + timedelta(hours=170)}, "end", "longer than the 168 hours"),
        ({"start": "yesterday"}, "start", "Enter a valid date/time"),
        ({"camera": "2"}, "camera", "'2' is not a camera you may export"),  # as if it did not exist
        ({"format": "webm"}, "format", "'webm' is not a known format"),
        ({"camera": None}, "camera", "Choose at least one camera"),
    ],
)
def test_bad_requests_show_errors_next_to_the_field(alice, data, field, message):
    values = {"camera": "1", "start": BASE, "end": BASE + 3 * SECOND, "format": "mp4", **data}
    post = {k: (local(v) if isinstance(v, datetime) else v) for k, v in values.items() if v is not None}
    response = alice.post("/export/", post)
    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert message.split(": ")[-1] in html.unescape(response.content.decode())
    assert not ExportTask.objects.exists()


def test_range_without_recording_is_refused_by_the_service(alice, exports_queue):
    start = BASE - timedelta(hours=2)
    response = alice.post("/export/", {"camera": "1", "start": local(start), "end": local(start + 10 * SECOND), "format": "mp4"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "No recording between" in text
    assert not ExportTask.objects.exists()


def test_several_cameras_make_one_batch(cameras, exports_queue):
    root = User.objects.create_superuser("root", password=PASSWORD)
    client = logged_in(root)
    response = client.post(
        "/export/", {"camera": ["1", "2"], "start": local(BASE), "end": local(BASE + 2 * SECOND), "format": "mp4"}
    )
    assert response.status_code == 302
    tasks = list(ExportTask.objects.all())
    assert len(tasks) == 2 and len({t.batch for t in tasks}) == 1 and tasks[0].batch is not None
    assert response["Location"] == f"{reverse('tasks')}?batch={tasks[0].batch}"


def test_preview_button_shows_coverage_without_creating_a_task(alice):
    response = alice.post(
        "/export/",
        {"camera": "1", "start": local(BASE + SECOND), "end": local(BASE + 7 * SECOND),
         "format": "mp4", "action": "preview"},
    )
    assert response.status_code == 200 and not ExportTask.objects.exists()
    row = response.context["preview"]["rows"][0]
    assert row["recorded_seconds"] == pytest.approx(4.0)  # 1..4 and 6..7
    assert row["gaps"] == [(BASE + 4 * SECOND, BASE + 6 * SECOND)]
    assert 0 < row["estimated_bytes"] < sum(s.size for s in Camera.objects.get(camera_id="1").segments.all())


def test_preview_fragment_reports_recorded_time_gaps_and_errors(alice):
    fragment = alice.get(
        "/export/preview/",
        {"camera": "1", "start": local(BASE), "end": local(BASE + 8 * SECOND), "format": "mp4"},
    ).content.decode()
    assert "6 s" in fragment and (BASE + 4 * SECOND).strftime("%H:%M:%S") in fragment
    assert "Estimated size" in fragment and "<html" not in fragment
    bad = alice.get("/export/preview/", {"camera": "1", "start": local(BASE), "end": local(BASE - SECOND)})
    assert "Must be after From" in bad.content.decode()
    hidden = alice.get("/export/preview/", {"camera": "2", "start": local(BASE), "end": local(BASE + SECOND)})
    assert "Yard" not in hidden.content.decode() and "Cameras: '2' is not a camera you may export" in html.unescape(hidden.content.decode())


def test_quick_range_last_five_minutes(alice):
    before = timezone.now().replace(microsecond=0)
    response = alice.post("/export/", {"camera": "1", "quick": "last-5", "format": "avi"})
    form = response.context["form"]
    start, end = form.initial["start"], form.initial["end"]
    assert end - start == timedelta(minutes=5)
    assert before <= end <= timezone.now()
    assert form.initial["camera"] == ["1"] and form.initial["format"] == "avi"
    assert not form.is_bound  # no errors shown for a half-filled form


def test_quick_range_around_from(alice):
    response = alice.post("/export/", {"camera": "1", "start": local(BASE), "around": "2", "quick": "around"})
    form = response.context["form"]
    assert (form.initial["start"], form.initial["end"]) == (BASE - timedelta(minutes=2), BASE + timedelta(minutes=2))


def test_time_that_does_not_exist_in_the_user_zone(alice, users):
    UserPreference.objects.create(user=users["alice"], time_zone="Europe/Berlin")
    response = alice.post("/export/", {"camera": "1", "start": "2026-03-29T02:30:00", "end": "2026-03-29T03:30:00"})
    assert "does not exist in Europe/Berlin" in " ".join(response.context["form"].errors["start"])


def test_preferences_change_the_zone_and_need_csrf(users):
    client = logged_in(users["alice"], csrf=True)
    assert client.post("/preferences/", {"time_zone": "Asia/Tokyo"}).status_code == 403
    token = csrf_token(client, "/preferences/")
    response = client.post("/preferences/", {"time_zone": "Asia/Tokyo", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert UserPreference.objects.get(user=users["alice"]).time_zone == "Asia/Tokyo"
    bad = client.post("/preferences/", {"time_zone": "Mars/Olympus", "csrfmiddlewaretoken": token})
    assert bad.status_code == 200 and bad.context["form"].errors


# -- history ----------------------------------------------------------------------------------


def test_history_shows_only_visible_tasks_newest_first(alice, cameras, users):
    mine = [make_task(cameras[0], users["alice"], created_at=timezone.now() - timedelta(minutes=i)) for i in range(3)]
    theirs = make_task(cameras[1], users["bob"])
    text = alice.get("/tasks/").content.decode()
    ids = re.findall(r'id="task-([0-9a-f-]{36})"', text)
    assert ids == [str(t.id) for t in mine]
    assert str(theirs.id) not in text


def test_history_is_paginated_with_constant_queries(alice, cameras, users, django_assert_max_num_queries):
    now = timezone.now()
    ExportTask.objects.bulk_create(
        ExportTask(camera=cameras[0], requested_from=BASE, start=BASE, end=BASE + SECOND, format="mp4",
                   requested_by=users["alice"], created_at=now - timedelta(seconds=i))
        for i in range(120)
    )
    with django_assert_max_num_queries(8):
        first = alice.get("/tasks/")
    assert len(re.findall(r'class="task-row', first.content.decode())) == 50
    assert first.context["page_obj"].paginator.num_pages == 3
    last = alice.get("/tasks/", {"page": 3})
    assert len(re.findall(r'class="task-row', last.content.decode())) == 20
    assert alice.get("/tasks/", {"page": "999"}).context["page_obj"].number == 3


def test_history_filters_by_camera_state_and_day(cameras, users):
    root = User.objects.create_superuser("root", password=PASSWORD)
    client = logged_in(root)
    old = timezone.now() - timedelta(days=2)
    a = make_task(cameras[0], state=State.READY)
    b = make_task(cameras[1], state=State.FAILED)
    c = make_task(cameras[0], state=State.FAILED, created_at=old)

    def shown(**params):
        return set(re.findall(r'id="task-([0-9a-f-]{36})"', client.get("/tasks/", params).content.decode()))

    assert shown() == {str(a.id), str(b.id), str(c.id)}
    assert shown(camera="1") == {str(a.id), str(c.id)}
    assert shown(state="Failed") == {str(b.id), str(c.id)}
    assert shown(camera="1", state="Failed") == {str(c.id)}
    assert shown(day=old.date().isoformat()) == {str(c.id)}


def test_history_camera_filter_cannot_reach_another_users_camera(alice, cameras, users):
    theirs = make_task(cameras[1], users["bob"])
    mine = make_task(cameras[0], users["alice"])
    text = alice.get("/tasks/", {"camera": "2"}).content.decode()
    # an unknown (or hidden) camera is an invalid filter value: ignored, never a way in
    assert re.findall(r'id="task-([0-9a-f-]{36})"', text) == [str(mine.id)]
    assert str(theirs.id) not in text and '<option value="2"' not in text


def test_batch_is_grouped_with_a_zip_link(alice, cameras, users):
    batch = uuid.uuid4()
    make_task(cameras[0], users["alice"], batch=batch, state=State.READY)
    make_task(cameras[0], users["alice"], batch=batch)
    text = alice.get("/tasks/").content.decode()
    assert text.count('class="batch-head"') == 1
    assert "Batch of 2 · 1 ready" in text
    assert reverse("batch-zip", args=[batch]) in text


def test_progress_json_covers_only_visible_tasks(alice, cameras, users):
    running = make_task(cameras[0], state=State.IN_PROGRESS, percents=42)
    done = make_task(cameras[0], state=State.READY, percents=100, size=1234, sha256="ab" * 32)
    hidden = make_task(cameras[1], state=State.IN_PROGRESS, percents=10)
    body = alice.get("/tasks/progress/", {"id": [running.id, done.id, hidden.id, "junk"]}).json()
    by_id = {t["id"]: t for t in body["tasks"]}
    assert set(by_id) == {str(running.id), str(done.id)}
    assert by_id[str(running.id)] == {"id": str(running.id), "state": "InProgress", "percents": 42, "active": True, "label": "In Progress"}
    assert "html" not in by_id[str(running.id)]
    html = by_id[str(done.id)]["html"]
    assert reverse("task-download", args=[done.id]) in html and "ab" * 32 in html


def test_history_rows_offer_the_actions_their_state_allows(alice, cameras):
    ready = make_task(cameras[0], state=State.READY, size=10)
    queued = make_task(cameras[0])
    failed = make_task(cameras[0], state=State.FAILED, error_message="disk on fire")
    text = alice.get("/tasks/").content.decode()

    def row(task):
        return re.search(rf'<tr id="task-{task.id}".*?</tr>', text, re.S).group(0)

    assert "Download" in row(ready) and "Cancel" not in row(ready) and "Retry" not in row(ready)
    assert "Cancel" in row(queued) and 'data-active="1"' in row(queued) and "Download" not in row(queued)
    assert "Retry" in row(failed) and "disk on fire" in row(failed)


# -- detail and actions -----------------------------------------------------------------------


def test_detail_shows_everything_and_hides_other_users_tasks(alice, cameras, users):
    task = make_task(
        cameras[0], users["alice"], state=State.FAILED, technique="exact cut",
        error_message="Traceback-ish\nfull text of the failure", sha256="cd" * 32,
        gaps=[{"From": "2026-11-20T10:00:04.000Z", "To": "2026-11-20T10:00:06.000Z"}],
        started_at=timezone.now() - timedelta(seconds=5), finished_at=timezone.now(),
    )
    text = alice.get(reverse("task-detail", args=[task.id])).content.decode()
    for expected in ("exact cut", "full text of the failure", "cd" * 32, "alice", "10:00:04", "2 s", "took"):
        assert expected in text
    other = make_task(cameras[1], users["bob"])
    assert alice.get(reverse("task-detail", args=[other.id])).status_code == 404
    assert alice.get(reverse("task-detail", args=[uuid.uuid4()])).status_code == 404


@pytest.mark.parametrize("action", ["task-cancel", "task-delete", "task-retry"])
def test_actions_are_csrf_protected_posts_and_404_for_others(users, cameras, action):
    mine = make_task(cameras[0], state=State.FAILED)
    theirs = make_task(cameras[1], state=State.FAILED)
    client = logged_in(users["alice"], csrf=True)
    assert client.get(reverse(action, args=[mine.id])).status_code == 405
    assert client.post(reverse(action, args=[mine.id])).status_code == 403
    token = csrf_token(client, "/tasks/")
    assert client.post(reverse(action, args=[theirs.id]), {"csrfmiddlewaretoken": token}).status_code == 404


def test_cancel_delete_and_retry_change_the_task(
    alice, cameras, exports_queue, django_capture_on_commit_callbacks
):
    queued = make_task(cameras[0])
    response = alice.post(reverse("task-cancel", args=[queued.id]), {"next": "/tasks/?state=Cancelled", "confirmed": "1"})
    assert response.status_code == 302 and response["Location"] == "/tasks/?state=Cancelled"
    queued.refresh_from_db()
    assert queued.state == State.CANCELLED

    with django_capture_on_commit_callbacks(execute=True):
        alice.post(reverse("task-retry", args=[queued.id]))
    queued.refresh_from_db()
    assert queued.state == State.CREATED and queued.percents == 0
    assert exports_queue.fetch_job(str(queued.id)) is not None

    failed = make_task(cameras[0], state=State.FAILED)
    response = alice.post(reverse("task-delete", args=[failed.id]), {"next": "https://evil.example/", "confirmed": "1"})
    assert response["Location"] == reverse("task-detail", args=[failed.id])  # no open redirect
    failed.refresh_from_db()
    assert failed.state == State.DELETED

    with django_capture_on_commit_callbacks(execute=True):
        alice.post(reverse("task-retry", args=[failed.id]))
    failed.refresh_from_db()
    assert failed.state == State.CREATED and failed.expires_at is None

    ready = make_task(cameras[0], state=State.READY)
    page = alice.post(reverse("task-retry", args=[ready.id]), follow=True)
    assert "only a Failed, Cancelled or Deleted task can be retried" in page.content.decode()


def test_export_runs_and_downloads_through_the_pages(
    alice, exports_queue, tmp_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            "/export/",
            {"camera": "1", "start": local(BASE + SECOND), "end": local(BASE + 3 * SECOND), "format": "mp4"},
        )
    assert response.status_code == 302
    run_worker()
    task = ExportTask.objects.get()
    assert task.state == State.READY, task.error_message

    detail = alice.get(reverse("task-detail", args=[task.id])).content.decode()
    player = re.search(r'<video controls preload="metadata" src="([^"]+)"', detail).group(1)
    assert player.startswith(reverse("task-play", args=[task.id]) + "?v=")
    # The player's requests (several from byte 0, then ranges) are one view, not a download.
    for header in ("bytes=0-", "bytes=0-", "bytes=100-199"):
        played = alice.get(player.replace("&amp;", "&"), HTTP_RANGE=header)
        assert played.status_code == 206
        b"".join(played.streaming_content)
    audited = AuditEvent.objects.filter(task_id=task.id)
    assert audited.filter(action="view").count() == 1
    assert not audited.filter(action="download").exists()
    assert f'{reverse("review", args=["1"])}?t=' in detail

    full = alice.get(reverse("task-download", args=[task.id]))
    body = b"".join(full.streaming_content)
    assert full.status_code == 200 and len(body) == task.size
    path = tmp_path / "out.mp4"
    path.write_bytes(body)
    with av.open(str(path)) as container:
        first = next(container.decode(video=0))
    assert abs(synth.frame_wall_time(first.to_ndarray(format="gray")) - (BASE + SECOND)) < timedelta(milliseconds=20)

    part = alice.get(reverse("task-download", args=[task.id]), HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206 and b"".join(part.streaming_content) == body[10:20]
    downloads = AuditEvent.objects.filter(task_id=task.id, action="download").count()
    assert downloads == 1  # the ranged request of a player is not another download



def test_download_of_unfinished_or_hidden_task(alice, cameras, users):
    queued = make_task(cameras[0])
    assert alice.get(reverse("task-download", args=[queued.id])).status_code == 409
    theirs = make_task(cameras[1], state=State.READY)
    assert alice.get(reverse("task-download", args=[theirs.id])).status_code == 404


def test_batch_zip_is_streamed_and_holds_every_finished_file(
    cameras, exports_queue, django_capture_on_commit_callbacks
):
    root = User.objects.create_superuser("root", password=PASSWORD)
    client = logged_in(root)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/export/", {"camera": ["1", "2"], "start": local(BASE), "end": local(BASE + 2 * SECOND), "format": "mp4"})
    run_worker()
    tasks = list(ExportTask.objects.order_by("camera__camera_id"))
    assert [t.state for t in tasks] == [State.READY, State.READY]
    response = client.get(reverse("batch-zip", args=[tasks[0].batch]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    chunks = list(response.streaming_content)
    assert len(chunks) > 2  # written as it goes, not one blob
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive_zip:
        infos = archive_zip.infolist()
        assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
        assert [info.file_size for info in infos] == [t.size for t in tasks]
        assert [info.filename for info in infos] == [os.path.basename(t.output_path) for t in tasks]
        assert archive_zip.testzip() is None

    alice = User.objects.create_user("zoe", password=PASSWORD)
    tasks[0].camera.allowed_users.add(alice)
    only_one = b"".join(logged_in(alice).get(reverse("batch-zip", args=[tasks[0].batch])).streaming_content)
    assert len(zipfile.ZipFile(io.BytesIO(only_one)).infolist()) == 1  # camera 2 is not hers
    assert logged_in(alice).get(reverse("batch-zip", args=[uuid.uuid4()])).status_code == 404


def test_stream_zip_never_holds_more_than_a_chunk(tmp_path):
    from exports.views import ZIP_CHUNK, stream_zip

    big = tmp_path / "camera-1_big.mp4"
    big.write_bytes(os.urandom(3 * ZIP_CHUNK + 123))
    small = tmp_path / "camera-2_small.mp4"
    small.write_bytes(b"x" * 10)
    chunks = list(stream_zip([big, small]))
    assert max(len(chunk) for chunk in chunks) <= ZIP_CHUNK + 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive_zip:
        assert archive_zip.read(big.name) == big.read_bytes()
        assert archive_zip.read(small.name) == b"x" * 10


def test_action_urls_are_sub_paths_of_the_detail_url():
    # _task_row.html builds them from the detail URL to save a reverse() per action per row.
    task_id = uuid.uuid4()
    detail = reverse("task-detail", args=[task_id])
    for action in ("download", "cancel", "retry", "delete"):
        assert reverse(f"task-{action}", args=[task_id]) == f"{detail}{action}/"


# -- what a new user hit (issue 10) -----------------------------------------------------------


def test_refusal_shows_times_in_the_users_zone(alice, users, exports_queue):
    UserPreference.objects.create(user=users["alice"], time_zone="Europe/Berlin")
    start = BASE - timedelta(hours=2)
    berlin = start.astimezone(ZoneInfo("Europe/Berlin"))
    response = alice.post(
        "/export/",
        {"camera": "1", "start": local(start, "Europe/Berlin"),
         "end": local(start + 10 * SECOND, "Europe/Berlin"), "format": "mp4"},
    )
    text = response.content.decode()
    assert f"No recording between {berlin:%Y-%m-%d %H:%M:%S} and" in text
    assert "Europe/Berlin." in text and "UTC" not in text.split("No recording between")[1][:80]


def test_times_are_not_repeated_when_the_zone_is_utc(alice, users):
    query = {"camera": "1", "start": local(BASE), "end": local(BASE + 8 * SECOND), "format": "mp4"}
    utc_fragment = alice.get("/export/preview/", query).content.decode()
    assert " = " not in utc_fragment
    assert utc_fragment.count(BASE.strftime("%Y-%m-%d %H:%M:%S UTC")) == 1
    assert 'data-start-utc=""' in utc_fragment  # the script writes no "= … UTC" under the field

    UserPreference.objects.create(user=users["alice"], time_zone="Europe/Berlin")
    berlin = {**query, "start": local(BASE, "Europe/Berlin"), "end": local(BASE + 8 * SECOND, "Europe/Berlin")}
    fragment = alice.get("/export/preview/", berlin).content.decode()
    moment = BASE.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"{moment:%Y-%m-%d %H:%M:%S} Europe/Berlin = {BASE:%Y-%m-%d %H:%M:%S} UTC" in fragment


def test_time_fields_are_24_hour_text_inputs_with_a_format_hint(alice):
    text = alice.get("/export/", {"camera": "1", "from": BASE.strftime("%Y-%m-%dT%H:%M:%SZ")}).content.decode()
    assert 'type="datetime-local"' not in text
    start = re.search(r'<input [^>]*name="start"[^>]*>', text).group(0)
    assert 'type="text"' in start and 'pattern="' in start and 'placeholder="YYYY-MM-DD HH:MM:SS"' in start
    assert f'value="{BASE:%Y-%m-%d %H:%M:%S}"' in start
    assert "24-hour" in text


def test_camera_card_counts_the_gaps_its_list_shows_with_dates(alice):
    text = alice.get("/").content.decode()
    card = re.search(r'<article class="card camera" id="camera-1".*?</article>', text, re.S).group(0)
    listed = re.findall(r"<li>(\d{4}-\d{2}-\d{2} [\d:]{8} – [^<]+)</li>", card)
    # Only the 2 s hole between the recordings: not the hours before the first recording, not
    # the minutes since the last one (the test camera's segments are 2 s, the live edge 1 min
    # does not cover half an hour, so that stretch is a gap).
    count = int(re.search(r'class="gap-count">(\d+) gap', card).group(1))
    assert count == len(listed) == len(re.findall(r'class="gap"', card))
    assert listed[0].startswith((BASE + 4 * SECOND).strftime("%Y-%m-%d %H:%M:%S"))
    first_gap_left = float(re.search(r'class="gap" style="left:([\d.]+)%', card).group(1))
    assert first_gap_left > 90  # nothing drawn at the left edge before the first recording


def test_batch_header_counts_only_visible_tasks_and_updates_live(alice, cameras, users):
    batch = uuid.uuid4()
    mine = make_task(cameras[0], users["alice"], batch=batch, state=State.IN_PROGRESS, percents=50)
    make_task(cameras[1], users["bob"], batch=batch, state=State.READY, size=10)
    text = alice.get("/tasks/").content.decode()
    assert "Batch of 1 · 0 ready" in text
    assert reverse("batch-zip", args=[batch]) not in text  # bob's file is not hers: no 404 link

    ExportTask.objects.filter(id=mine.id).update(state=State.READY, percents=100, size=10)
    body = alice.get("/tasks/progress/", {"id": [mine.id]}).json()
    (head,) = body["batches"]
    assert head["id"] == str(batch)
    assert f'id="batch-{batch}"' in head["html"] and "Batch of 1 · 1 ready" in head["html"]
    assert reverse("batch-zip", args=[batch]) in head["html"]


def test_percents_say_100_only_while_the_file_is_there(alice, cameras, users):
    deleted = make_task(cameras[0], users["alice"], state=State.DELETED, percents=100,
                        expires_at=timezone.now() + timedelta(hours=1))
    failed = make_task(cameras[0], users["alice"], state=State.FAILED, percents=100, error_message="boom")
    ready = make_task(cameras[0], users["alice"], state=State.READY, percents=100, size=10)

    def status(task):
        return alice.get("/getarchivetaskstatus", {"archivetaskid": str(task.id)}).json()["Percents"]

    assert (status(deleted), status(failed), status(ready)) == (0, 99, 100)
    detail = alice.get(reverse("task-detail", args=[deleted.id])).content.decode()
    assert "<progress" not in detail and "100 %" not in detail and "Expires" not in detail
    assert "100&nbsp;%" in alice.get(reverse("task-detail", args=[ready.id])).content.decode()


def test_attempts_count_every_run_across_cancel_and_retry(alice, cameras, users):
    from exports.tasks import record_audit

    task = make_task(cameras[0], users["alice"], state=State.IN_PROGRESS, attempts=1)
    record_audit(task, AuditEvent.Action.START, None, None, attempt=1)
    record_audit(task, AuditEvent.Action.CANCEL, users["alice"], None)
    record_audit(task, AuditEvent.Action.RETRY, users["alice"], None)
    record_audit(task, AuditEvent.Action.START, None, None, attempt=1)
    text = alice.get(reverse("task-detail", args=[task.id])).content.decode()
    assert "<dt>Attempts</dt><dd>2 runs (1 retry)</dd>" in text


@pytest.mark.parametrize("action", ["task-cancel", "task-delete"])
def test_cancel_and_delete_ask_for_confirmation_first(alice, cameras, users, action):
    state = State.CREATED if action == "task-cancel" else State.READY
    task = make_task(cameras[0], users["alice"], state=state)
    rows = alice.get("/tasks/").content.decode()
    assert re.search(rf'<form method="post" action="{reverse(action, args=[task.id])}" data-confirm="[^"]+\?', rows)
    page = alice.post(reverse(action, args=[task.id]), {"next": "/tasks/"})
    text = page.content.decode()
    assert page.status_code == 200 and 'name="confirmed" value="1"' in text
    assert 'name="next" value="/tasks/"' in text and "go back" in text
    task.refresh_from_db()
    assert task.state == state  # nothing happened yet
    done = alice.post(reverse(action, args=[task.id]), {"next": "/tasks/", "confirmed": "1"})
    assert done.status_code == 302
    task.refresh_from_db()
    assert task.state == (State.CANCELLED if action == "task-cancel" else State.DELETED)
