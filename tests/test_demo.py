from datetime import UTC, datetime, timedelta

import av
import pytest

from exports import demo
from exports.media.synth import frame_wall_time
from exports.models import Camera


@pytest.fixture
def demo_dir(settings, tmp_path):
    settings.DEMO_DIR = tmp_path / "demo"
    return settings.DEMO_DIR


@pytest.mark.django_db
def test_demo_writes_frigate_segments_up_to_now_and_indexes_them(demo_dir):
    now = datetime(2026, 11, 20, 10, 0, 37, tzinfo=UTC)
    written = demo.write_missing_segments(now=now, history=timedelta(seconds=30))
    assert written == 3  # 10:00:00, :10, :20 are complete; :30 is still being "recorded"
    newest = demo_dir / "2026-11-20" / "10" / demo.DEMO_SOURCE_NAME / "00.20.mp4"
    assert newest.exists()
    with av.open(str(newest)) as container:
        first = next(container.decode(video=0))
        assert frame_wall_time(first.to_ndarray(format="gray")) == datetime(
            2026, 11, 20, 10, 0, 20, tzinfo=UTC
        )
        assert container.streams.audio[0].codec_context.name == "aac"
    assert demo.write_missing_segments(now=now, history=timedelta(seconds=30)) == 0

    camera = demo.ensure_demo_camera()
    from exports.archive import index_camera

    index_camera(camera)
    starts = list(camera.segments.order_by("start").values_list("start", flat=True))
    assert starts == [datetime(2026, 11, 20, 10, 0, s, tzinfo=UTC) for s in (0, 10, 20)]


@pytest.mark.django_db
def test_demo_is_only_created_when_no_other_camera_exists(demo_dir, settings):
    assert demo.demo_wanted()
    Camera.objects.create(camera_id="cam-a", archive_path="/srv/a")
    assert not demo.demo_wanted()
    demo.ensure_demo_camera()
    assert demo.demo_wanted()  # the demo camera is in use: keep it growing
    settings.PSIMEXPORT_DEMO = False
    assert not demo.demo_wanted()


def test_demo_prunes_only_old_hours(demo_dir):
    now = datetime(2026, 11, 20, 20, 0, 0, tzinfo=UTC)
    old = demo_dir / "2026-11-20" / "10" / demo.DEMO_SOURCE_NAME / "00.00.mp4"
    recent = demo_dir / "2026-11-20" / "19" / demo.DEMO_SOURCE_NAME / "00.00.mp4"
    for path in (old, recent):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    assert demo.prune_old_segments(now=now) == 1
    assert not old.exists() and recent.exists()
