"""The review page in a real browser (Playwright driving Debian's Chromium) against a live
server, with an rq worker thread for the export at the end.

Every synthetic frame carries its recorded wall time as a bar code. The page's own frame
callback draws the frame on screen to a canvas and reads the bar code (READER below, a port of
synth.frame_wall_time), so each check compares the frame really shown with the time the page
displays for it: after opening at a time, while playing, across a segment join, after a gap,
after a seek and after frame steps. Then In and Out are marked with frame steps, exported, and
the export decoded: its first and last frames are the marked ones.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import pytest
from django.contrib.auth.models import User

from exports import download
from exports.archive import index_camera
from exports.media import synth
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import AuditEvent, Camera, ExportTask, UserPreference
from tests.test_e2e_pages import (  # noqa: F401 - fixtures
    CHROMIUM,
    PASSWORD,
    ZONE,
    browser,
    log_in,
    page,
    shot,
    worker,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.django_db(transaction=True),
]

SPEC = SegmentSpec(width=320, height=240, fps=Fraction(25), gop=25, acodec=None)
FRAME = timedelta(milliseconds=40)
BASE = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=0)
# Two segments joined at BASE+6 s, a 3 s gap, then a third segment.
SEGMENTS = [(BASE, 6), (BASE + timedelta(seconds=6), 6), (BASE + timedelta(seconds=15), 6)]

# Reads the bar code of the frame presented in each frame callback and records it beside the
# time the page shows for that frame (its data-shown attribute, set by the page's own callback,
# which was registered first and so runs first).
READER = """
(() => {
  const video = document.getElementById('player');
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const EPOCH_2000 = Date.UTC(2000, 0, 1);
  window.readCode = () => {
    const w = video.videoWidth, h = video.videoHeight;
    canvas.width = w; canvas.height = h;
    ctx.drawImage(video, 0, 0, w, h);
    const block = Math.max(4, Math.floor(w / 20));
    let millis = 0;
    for (let bit = 0; bit < 40; bit++) {
      const row = Math.floor(bit / 20), col = bit % 20;
      const x0 = col * block + Math.floor(block / 4), y0 = row * block + Math.floor(block / 4);
      const size = Math.floor(block / 2);
      const data = ctx.getImageData(x0, y0, size, size).data;
      let sum = 0;
      for (let i = 0; i < data.length; i += 4) sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      millis = millis * 2 + (sum / (data.length / 4) > 128 ? 1 : 0);
    }
    return EPOCH_2000 + millis;
  };
  window.seen = [];
  const onFrame = (now, meta) => {
    const shown = Number(document.getElementById('review').dataset.shown);
    // How late this callback draws: on a busy machine the element may already hold the next
    // frame, and such a sample says nothing about the page.
    const late = performance.now() - meta.expectedDisplayTime;
    window.seen.push({ shown: shown, code: window.readCode(), late: late });
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
})();
"""


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("review-recordings")
    for start, seconds in SEGMENTS:
        write_segment(frigate_path(root, "door", start), start, seconds, SPEC)
    old = time.time() - 3600
    for path in root.rglob("*.mp4"):
        os.utime(path, (old, old))
    return root


@pytest.fixture
def site(recordings, live_server, worker):  # noqa: F811
    camera = Camera.objects.create(
        camera_id="7",
        name="Door",
        archive_path=str(recordings),
        source_name="door",
        layout="frigate",
    )
    index_camera(camera)
    user = User.objects.create_user("operator", password=PASSWORD)
    camera.allowed_users.add(user)
    UserPreference.objects.create(user=user, time_zone=ZONE)
    return live_server.url


def ms(moment: datetime) -> float:
    return moment.timestamp() * 1000


def open_review(tab, url, at):
    tab.goto(f"{url}/cameras/7/review/?t={at.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z")
    tab.wait_for_function("document.getElementById('review').dataset.ready === '1'")
    wait_shown(tab, "!Number.isNaN(s)")  # a frame's time is on screen, not just the page
    tab.evaluate(READER)


def shown(tab) -> float:
    return float(tab.evaluate("document.getElementById('review').dataset.shown"))


def check_frame_on_screen(tab, expected: datetime | None = None):
    """The bar code of the frame on screen equals the time the tab shows, within a frame."""
    code, displayed = tab.evaluate(
        "[window.readCode(), Number(document.getElementById('review').dataset.shown)]"
    )
    assert abs(code - displayed) <= 40, (code, displayed)
    if expected is not None:
        assert abs(displayed - ms(expected)) < 0.01, (displayed, ms(expected))
    return displayed


def wait_shown(tab, condition: str):
    tab.wait_for_function(
        f"(() => {{ const s = Number(document.getElementById('review').dataset.shown); return {condition}; }})()",
        timeout=30_000,
    )


def check_seen(tab):
    """Frames presented while playing: the picture drawn in each frame callback is the frame
    the tab shows, within one frame, or (when Chromium's compositor has already moved on, seen
    now and then on a busy machine) the frame the tab shows at the next callback."""
    seen = tab.evaluate("window.seen.splice(0)")
    assert len(seen) >= 5, seen
    bad = [
        (this, after)
        for this, after in zip(seen, seen[1:], strict=False)
        if not (this["shown"] - 40 <= this["code"] <= max(this["shown"] + 40, after["shown"]))
    ]
    assert not bad, bad[:5]
    close = sum(abs(s["code"] - s["shown"]) <= 40 for s in seen)
    assert close >= 0.8 * len(seen), seen
    return seen


def press_and_wait(tab, key):
    before = shown(tab)
    tab.keyboard.press(key)
    wait_shown(tab, f"s !== {before!r}")


def test_review_plays_seeks_steps_marks_and_exports_the_marked_frames(site, page, tmp_path):  # noqa: F811
    url = site
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    log_in(page, url)
    open_review(page, url, BASE + timedelta(seconds=2))
    check_frame_on_screen(page, BASE + timedelta(seconds=2))
    local = (BASE + timedelta(seconds=2)).astimezone(__import__("zoneinfo").ZoneInfo(ZONE))
    assert page.locator("#clock-local").inner_text() == local.strftime("%Y-%m-%d %H:%M:%S.000")
    assert (BASE + timedelta(seconds=2)).strftime("%H:%M:%S.000 UTC") in page.locator(
        "#clock-utc"
    ).inner_text()
    event = AuditEvent.objects.get(action=AuditEvent.Action.VIEW)
    assert (event.camera_id, event.username, event.task_id) == ("7", "operator", None)
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DOWNLOAD).exists()

    # Play across the join of the first two segments: the picture is the frame the page names
    # and nothing is skipped at the join.
    page.evaluate("window.seen.splice(0)")
    # Paused, the page fetches what follows: the join is no hole in what the browser holds
    # (one buffered range from here to the end of the second segment), so nothing has to stop
    # there. (Whether Chromium keeps up decoding on a busy machine is not the page's doing.)
    page.wait_for_function(
        "(() => { const v = document.getElementById('player'), b = v.buffered, t = v.currentTime;"
        " for (let i = 0; i < b.length; i++) if (b.start(i) <= t && b.end(i) >= t + 9.9) return true;"
        " return false; })()"
    )
    page.keyboard.press("Space")
    wait_shown(page, f"s >= {ms(BASE + timedelta(seconds=7))}")
    seen = check_seen(page)
    walls = sorted({s["shown"] for s in seen})
    assert walls[0] < ms(BASE + timedelta(seconds=6)) <= walls[-1]
    steps = [b - a for a, b in zip(walls, walls[1:], strict=False)]
    # Frames a busy machine does not paint are not missing from the stream; a skip would be
    # a jump of the media clock, which the gap logic would announce.
    assert max(steps) < 500, max(steps)
    assert page.locator("#gap-marker").is_hidden()

    # On through the 3 s gap: the page skips it, says how long it was, and goes on playing.
    wait_shown(page, f"s >= {ms(BASE + timedelta(seconds=15, milliseconds=400))}")
    assert "Gap of 3.000 s skipped" in page.locator("#gap-marker").inner_text()
    check_seen(page)
    page.keyboard.press("k")
    page.wait_for_function("document.getElementById('player').paused")
    check_frame_on_screen(page)
    shot(page, "review-gap")

    # Zoom in to a minute; a seek by clicking the timeline lands on a frame whose bar code is
    # the time shown.
    for _ in range(8):
        if page.locator("#zoom-label").inner_text() == "1 min":
            break
        page.keyboard.press("+")
    assert page.locator("#zoom-label").inner_text() == "1 min"
    box = page.locator("#rtrack").bounding_box()
    before = shown(page)
    page.locator("#rtrack").click(position={"x": box["width"] * 0.3, "y": 10})
    wait_shown(page, f"s !== {before!r}")
    page.wait_for_function("!document.getElementById('player').seeking")
    check_frame_on_screen(page)

    # A seek to an exact instant, then frame steps across the join at BASE+6 s.
    target = BASE + timedelta(seconds=5, milliseconds=880)
    page.evaluate(f"window.psimReview.seek({ms(target)}, false)")
    wait_shown(page, f"Math.abs(s - {ms(target)}) < 0.01")
    check_frame_on_screen(page, target)
    page.keyboard.press("i")
    for n in range(1, 5):
        press_and_wait(page, ".")
        check_frame_on_screen(page, target + n * FRAME)
    press_and_wait(page, ",")
    check_frame_on_screen(page, target + 3 * FRAME)
    press_and_wait(page, ".")
    page.keyboard.press("o")
    assert page.locator("#in-text").inner_text().endswith(".880")
    assert page.locator("#out-text").inner_text().endswith(".040")
    assert "5 frames" in page.locator("#length-text").inner_text()
    page.keyboard.press("-")  # ten seconds of recording and the gap across the timeline
    shot(page, "review", docs=True)

    # Export straight away: the file holds exactly the marked frames.
    page.locator("#export-format").select_option("mkv")
    page.get_by_role("button", name="Export In–Out").click()
    page.wait_for_url(url + "/tasks/")
    task = ExportTask.objects.get()
    assert (task.start, task.end) == (target, target + 5 * FRAME)
    page.wait_for_function(
        f"document.querySelector('#task-{task.id} progress').value === 100", timeout=90_000
    )
    task.refresh_from_db()
    with av.open(str(download.export_file_path(task))) as container:
        walls = [
            synth.frame_wall_time(f.to_ndarray(format="gray")) for f in container.decode(video=0)
        ]
    assert walls == [target + n * FRAME for n in range(5)]
    assert not errors


def test_review_on_a_phone(site, page):  # noqa: F811
    url = site
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, url)
    at = BASE + timedelta(seconds=16, milliseconds=520)
    open_review(page, url, at)
    check_frame_on_screen(page, at)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Touch-size controls: a step by the button works like the key.
    page.locator("#step-forward").click()
    wait_shown(page, f"Math.abs(s - {ms(at + FRAME)}) < 0.01")
    check_frame_on_screen(page, at + FRAME)
    shot(page, "review-phone", docs=True)


def test_review_through_the_live_proxy(site, page):  # noqa: F811
    """?proxy=1 plays H.264 re-encoded by the server (the HEVC/MJPEG path): same frames, same
    times."""
    url = site
    techniques = []
    page.on(
        "response",
        lambda r: "/piece/" in r.url and techniques.append(r.headers.get("x-piece-technique")),
    )
    log_in(page, url)
    at = BASE + timedelta(seconds=7, milliseconds=480)
    page.goto(f"{url}/cameras/7/review/?t={at.strftime('%Y-%m-%dT%H:%M:%S')}.480Z&proxy=1")
    page.wait_for_function("document.getElementById('review').dataset.ready === '1'")
    wait_shown(page, "!Number.isNaN(s)")  # the proxy's first piece may still be on its way
    page.evaluate(READER)
    check_frame_on_screen(page, at)
    press_and_wait(page, ".")
    check_frame_on_screen(page, at + FRAME)
    assert techniques and set(techniques) == {"proxy"}
