"""Operator commands: add_camera, index_archive, grant_camera."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import Camera, Segment

pytestmark = pytest.mark.django_db

SMALL = SegmentSpec(width=160, height=120, acodec=None)
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def frigate_root(archive_dir):
    for offset in (0, 2, 6):
        start = T0 + timedelta(seconds=offset)
        write_segment(frigate_path(archive_dir, "front", start), start, 2.0, SMALL)
    write_segment(frigate_path(archive_dir, "back", T0), T0, 2.0, SMALL)
    return archive_dir


def test_add_camera_creates_indexes_and_summarises(frigate_root):
    out = run("add_camera", "1", str(frigate_root), "--source-name", "front", "--name", "Front door")

    camera = Camera.objects.get(camera_id="1")
    assert (camera.name, camera.source_name, camera.layout) == ("Front door", "front", "auto")
    assert camera.segments.count() == 3
    assert "Camera 1 added" in out
    assert "3 segments" in out
    assert "2026-11-20 10:00:00 – 2026-11-20 10:00:08 UTC" in out
    assert "1 gap " in out


def test_add_camera_again_updates_only_what_is_given(frigate_root):
    run("add_camera", "front", str(frigate_root), "--name", "Front", "--timezone", "Europe/Berlin")
    out = run("add_camera", "front", str(frigate_root), "--layout", "frigate")
    camera = Camera.objects.get()
    assert (camera.name, camera.timezone, camera.layout) == ("Front", "Europe/Berlin", "frigate")
    assert "Camera front updated" in out
    assert Segment.objects.count() == 3


def test_add_camera_with_pattern_implies_pattern_layout(archive_dir):
    write_segment(archive_dir / "cam" / "2026" / "11" / "20" / "10-00-00.mkv", T0, 2.0, SMALL)
    run("add_camera", "p", str(archive_dir), "--pattern", "cam/%Y/%m/%d/%H-%M-%S.mkv")
    camera = Camera.objects.get()
    assert camera.layout == "pattern"
    assert camera.segments.get().start == T0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--timezone", "Mars/Olympus"], "unknown time zone"),
        (["--pattern", "%H-%M.mkv"], "must be a relative path with"),
        (["--layout", "pattern"], "needs --pattern"),
    ],
)
def test_add_camera_rejects_bad_options_clearly(archive_dir, extra, message):
    with pytest.raises(CommandError, match=message):
        run("add_camera", "x", str(archive_dir), *extra)
    assert not Camera.objects.exists()


def test_add_camera_rejects_a_missing_path(tmp_path):
    with pytest.raises(CommandError, match="no such directory"):
        run("add_camera", "x", str(tmp_path / "nope"))


def test_index_archive_reports_each_camera(frigate_root):
    run("add_camera", "front", str(frigate_root))
    run("add_camera", "back", str(frigate_root))
    start = T0 + timedelta(seconds=8)
    write_segment(frigate_path(frigate_root, "front", start), start, 2.0, SMALL)

    out = run("index_archive")
    assert "camera back: 1 segment," in out
    assert "camera front: 4 segments" in out
    assert "(1 new, 0 changed, 0 removed, 3 unchanged)" in out

    assert "camera back" not in run("index_archive", "front")


def test_index_archive_unknown_camera_and_broken_archive(frigate_root, tmp_path):
    with pytest.raises(CommandError, match="unknown camera: nope"):
        run("index_archive", "nope")
    moved = tmp_path / "moved"
    run("add_camera", "front", str(frigate_root))
    frigate_root.rename(moved)
    with pytest.raises(CommandError, match="could not index: front"):
        run("index_archive", "front")
    assert Segment.objects.count() == 3  # an unmounted archive does not wipe the index


def test_grant_camera_to_user_then_group_and_revoke(archive_dir):
    cameras = [Camera.objects.create(camera_id=i, archive_path=str(archive_dir)) for i in "12"]
    alice = User.objects.create_user("alice")
    guards = Group.objects.create(name="guards")
    bob = User.objects.create_user("bob")
    bob.groups.add(guards)

    assert "Granted user alice" in run("grant_camera", "alice", "1", "2")
    assert "Granted group guards" in run("grant_camera", "guards", "2")
    assert set(Camera.objects.restrict(alice)) == set(cameras)
    assert list(Camera.objects.restrict(bob)) == [cameras[1]]

    run("grant_camera", "alice", "1", "--revoke")
    assert list(Camera.objects.restrict(alice)) == [cameras[1]]


def test_grant_camera_errors(archive_dir):
    Camera.objects.create(camera_id="1", archive_path=str(archive_dir))
    User.objects.create_user("alice")
    with pytest.raises(CommandError, match="no user or group named 'nobody'"):
        run("grant_camera", "nobody", "1")
    with pytest.raises(CommandError, match="unknown camera: 9"):
        run("grant_camera", "alice", "1", "9")
    assert not Camera.objects.get().allowed_users.exists()
