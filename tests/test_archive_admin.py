"""Camera and segment admin: coverage columns, the "Index now" action, the read-only index."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from exports.archive import index_camera
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import Camera, Segment

pytestmark = pytest.mark.django_db

SMALL = SegmentSpec(width=160, height=120, acodec=None)
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


@pytest.fixture
def recorded(archive_dir):
    """Camera "front": 10:00:00-10:00:04 and 10:00:06-10:00:08 recorded, not yet indexed."""
    for offset in (0, 2, 6):
        start = T0 + timedelta(seconds=offset)
        write_segment(frigate_path(archive_dir, "front", start), start, 2.0, SMALL)
    return Camera.objects.create(camera_id="front", name="Front door", archive_path=str(archive_dir))


def run_maintenance_queue():
    """What a worker does with the queued "Index now" jobs."""
    from rq import SimpleWorker

    from exports.maintenance import get_queue

    queue = get_queue()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    return queue


def test_index_now_action_queues_the_indexing_for_a_worker(admin_client, recorded, redis_conn):
    url = reverse("admin:exports_camera_changelist")
    response = admin_client.post(
        url, {"action": "index_now", "_selected_action": [recorded.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "Camera front: indexing queued" in response.content.decode()
    assert Segment.objects.filter(camera=recorded).count() == 0  # not in the web request
    queue = run_maintenance_queue()
    assert Segment.objects.filter(camera=recorded).count() == 3
    (job_id,) = queue.finished_job_registry.get_job_ids()
    assert "3 segments" in queue.fetch_job(job_id).return_value()


def test_camera_list_shows_coverage_with_a_constant_number_of_queries(
    admin_client, recorded, archive_dir, django_assert_max_num_queries
):
    index_camera(recorded)
    url = reverse("admin:exports_camera_changelist")
    with django_assert_max_num_queries(12) as few:
        admin_client.get(url)
    for number in range(5):
        Camera.objects.create(camera_id=f"extra{number}", archive_path=str(archive_dir))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(url)
    text = response.content.decode()
    # first and last recording, to the second, in one column
    assert re.search(r"2026-11-20 10:00:00 – 10:00:\d\d<", text)
    assert "0.00" in text  # recorded hours: 6 s
    assert ">1<" in text  # one gap
    assert f"/admin/exports/segment/?camera__id__exact={recorded.pk}" in text


def test_camera_form_rejects_bad_zone_and_path(admin_client, tmp_path):
    response = admin_client.post(
        reverse("admin:exports_camera_add"),
        {
            "camera_id": "x", "archive_path": str(tmp_path / "missing"), "layout": "auto",
            "timezone": "Nowhere/Special", "enabled": "on",
        },
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "No such directory on the server." in text
    assert "unknown time zone" in text
    assert not Camera.objects.exists()


def test_segment_list_is_read_only_with_filters_and_dates(admin_client, recorded):
    index_camera(recorded)
    segment = Segment.objects.order_by("start").first()
    url = reverse("admin:exports_segment_changelist")

    listing = admin_client.get(url)
    assert listing.status_code == 200
    assert "2026-11-20/10/front/00.00.mp4" in listing.content.decode()
    filtered = admin_client.get(url, {"camera__id__exact": recorded.pk, "video_codec": "h264",
                                      "complete__exact": "1", "start__year": "2026"})
    assert filtered.status_code == 200
    assert "00.02.mp4" in filtered.content.decode()
    assert admin_client.get(url, {"video_codec": "mjpeg"}).content.decode().count("front/00.") == 0

    change = reverse("admin:exports_segment_change", args=[segment.pk])
    assert admin_client.get(change).status_code == 200  # view only
    assert admin_client.post(change, {"path": "../evil"}).status_code == 403
    assert admin_client.get(reverse("admin:exports_segment_add")).status_code == 403
    segment.refresh_from_db()
    assert segment.path == "2026-11-20/10/front/00.00.mp4"


def test_index_now_of_a_missing_archive_fails_its_job_with_the_reason(
    admin_client, tmp_path, redis_conn
):
    camera = Camera.objects.create(camera_id="gone", archive_path=str(tmp_path / "unmounted"))
    response = admin_client.post(
        reverse("admin:exports_camera_changelist"),
        {"action": "index_now", "_selected_action": [camera.pk]},
        follow=True,
    )
    assert response.status_code == 200
    queue = run_maintenance_queue()
    (job_id,) = queue.failed_job_registry.get_job_ids()
    assert "is not a readable directory" in queue.fetch_job(job_id).latest_result().exc_string
