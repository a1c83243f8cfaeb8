"""The archive indexer: layouts, probing, incremental scans, DST names and range queries."""

import os
import shutil
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from exports import archive
from exports.archive import ArchiveError, index_camera, segments_covering
from exports.media import probe as media_probe
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import Camera, Segment
from tests.media_helpers import NOT_A_RECORDING

pytestmark = pytest.mark.django_db

SMALL = SegmentSpec(width=160, height=120, fps=Fraction(25))
MS = timedelta(milliseconds=1)
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


def make_camera(archive_dir, camera_id="front", **fields) -> Camera:
    return Camera.objects.create(camera_id=camera_id, archive_path=str(archive_dir), **fields)


def write(path: Path, start: datetime, seconds: float = 2.0, spec=SMALL, **kw) -> Path:
    write_segment(path, start, seconds, spec, **kw)
    return path


def age(path: Path, seconds_ago: float = 600) -> None:
    """Pretend the recorder finished the file a while ago."""
    stamp = datetime.now().timestamp() - seconds_ago
    os.utime(path, (stamp, stamp))


def indexed(camera) -> list[tuple[str, datetime, datetime]]:
    return [(s.path, s.start, s.end) for s in Segment.objects.filter(camera=camera).order_by("start")]


def assert_close(actual: datetime, expected: datetime) -> None:
    assert abs(actual - expected) < MS, f"{actual} != {expected}"


@pytest.fixture
def count_probes(monkeypatch):
    """Count calls of the real probe."""
    calls = []
    real = media_probe.probe

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(archive.media_probe, "probe", counting)
    return calls


# -- layouts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["auto", "frigate"])
def test_frigate_layout_indexes_only_its_own_camera_folder(archive_dir, layout):
    starts = [T0 + timedelta(seconds=s) for s in (0, 2, 4)]
    for start in starts:
        write(frigate_path(archive_dir, "front", start), start)
    write(frigate_path(archive_dir, "back", T0), T0)
    camera = make_camera(archive_dir, layout=layout)

    summary = index_camera(camera)

    rows = indexed(camera)
    assert [r[0] for r in rows] == [
        "2026-11-20/10/front/00.00.mp4",
        "2026-11-20/10/front/00.02.mp4",
        "2026-11-20/10/front/00.04.mp4",
    ]
    for (_, start, end), expected in zip(rows, starts, strict=True):
        assert_close(start, expected)
        assert_close(end, expected + timedelta(seconds=2))
    assert (summary.added, summary.segments, summary.gaps, summary.failed) == (3, 3, 0, [])
    segment = Segment.objects.get(path__endswith="00.00.mp4")
    assert (segment.video_codec, segment.audio_codec, segment.width, segment.height) == (
        "h264", "aac", 160, 120,
    )
    assert segment.frame_rate == 25


def test_frigate_source_name_differs_from_camera_id(archive_dir):
    write(frigate_path(archive_dir, "driveway", T0), T0)
    camera = make_camera(archive_dir, camera_id="7", source_name="driveway", layout="frigate")
    index_camera(camera)
    assert [r[0] for r in indexed(camera)] == ["2026-11-20/10/driveway/00.00.mp4"]


FLAT_NAMES = [
    # name, expected UTC start, spec
    ("2026-11-20_10-00-00.mkv", T0, SMALL),
    ("20261120T100000.ts", T0, SMALL),
    ("20261120_100000.avi", T0, SegmentSpec(vcodec="mjpeg", width=160, height=120, acodec="pcm_s16le")),
    ("2026-11-20T11:00:00+01:00.mp4", T0, SegmentSpec(vcodec="hevc", width=160, height=120, acodec=None)),
    ("cam1_2026-11-20T10-00-00.500Z.mkv", T0 + timedelta(milliseconds=500), SMALL),
    (f"{int(T0.timestamp())}.ts", T0, SegmentSpec(width=160, height=120, acodec=None)),
    ("2026/11/20/10-00-00.mkv", T0, SMALL),
    ("2026-11-20/cam1_20261120_100000.mp4", T0, SMALL),
]


@pytest.mark.parametrize(("name", "expected", "spec"), FLAT_NAMES, ids=[n for n, _, _ in FLAT_NAMES])
def test_time_in_file_name_is_recognised_without_configuration(archive_dir, name, expected, spec):
    write(archive_dir / name, expected, 2.0, spec)
    camera = make_camera(archive_dir)

    summary = index_camera(camera)

    assert summary.failed == []
    [(path, start, end)] = indexed(camera)
    assert path == name
    assert_close(start, expected)
    assert_close(end, expected + timedelta(seconds=2))
    segment = Segment.objects.get()
    assert segment.video_codec == spec.vcodec
    assert segment.audio_codec == {"aac": "aac", "pcm_s16le": "pcm_s16le", None: ""}[spec.acodec]


def test_local_names_use_the_camera_zone(archive_dir):
    write(archive_dir / "2026-11-20_11-00-00.mkv", T0)
    camera = make_camera(archive_dir, timezone="Europe/Berlin")
    index_camera(camera)
    assert_close(indexed(camera)[0][1], T0)  # 11:00 CET is 10:00 UTC


def test_mpegts_with_running_timestamps_measures_video_span(archive_dir):
    write(archive_dir / "20261120T100000.ts", T0, 3.0, pts_origin=1234.5)
    camera = make_camera(archive_dir)
    index_camera(camera)
    [(_, start, end)] = indexed(camera)
    assert_close(end - start + T0, T0 + timedelta(seconds=3))


def test_explicit_pattern_wins_over_names(archive_dir):
    write(archive_dir / "rec" / "20261120" / "110000.mkv", T0)
    write(archive_dir / "2026-11-20_10-00-10.mkv", T0)  # auto would take it; the pattern does not
    camera = make_camera(
        archive_dir, layout="pattern", pattern="rec/%Y%m%d/%H%M%S.mkv", timezone="Europe/Berlin"
    )
    index_camera(camera)
    [(path, start, _)] = indexed(camera)
    assert path == "rec/20261120/110000.mkv"
    assert_close(start, T0)

    camera.pattern = "%Y-%m-%d_%H-%M-%S.mkv"  # the operator fixes the pattern: index follows
    camera.save()
    summary = index_camera(camera)
    assert (summary.added, summary.removed) == (1, 1)
    [(path, start, _)] = indexed(camera)
    assert path == "2026-11-20_10-00-10.mkv"
    assert_close(start, T0 + timedelta(seconds=10) - timedelta(hours=1))


def test_pattern_with_offset_gives_absolute_times(archive_dir):
    write(archive_dir / "20261120-110000+0100.mkv", T0)
    camera = make_camera(archive_dir, layout="pattern", pattern="%Y%m%d-%H%M%S%z.mkv",
                         timezone="America/New_York")
    index_camera(camera)
    assert_close(indexed(camera)[0][1], T0)


def test_odd_file_names_are_skipped_not_fatal(archive_dir):
    write(archive_dir / "2026-11-20_10-00-00.mkv", T0)
    odd = os.fsencode(archive_dir) + b"/2026-11-20_10-00-02-\xff.mkv"
    shutil.copyfile(archive_dir / "2026-11-20_10-00-00.mkv", odd)
    deep = archive_dir / ("x" * 250) / ("y" * 250) / ("z" * 250) / ("w" * 250)
    write(deep / "2026-11-20_10-00-04.mkv", T0 + timedelta(seconds=4))
    camera = make_camera(archive_dir)
    index_camera(camera)
    assert [r[0] for r in indexed(camera)] == ["2026-11-20_10-00-00.mkv"]


def test_name_without_time_uses_creation_time(archive_dir):
    # Matroska keeps the tag to the nanosecond (MP4's mvhd only to the second).
    created = T0 + timedelta(milliseconds=250)
    write(archive_dir / "clip.mkv", created, creation_time=created)
    camera = make_camera(archive_dir)
    index_camera(camera)
    [(_, start, end)] = indexed(camera)
    assert_close(start, created)
    assert_close(end, created + timedelta(seconds=2))


def test_unreadable_and_timeless_files_are_skipped_without_stopping_the_scan(archive_dir):
    write(archive_dir / "2026-11-20_10-00-00.mp4", T0)
    (archive_dir / "2026-11-20_10-00-02.mp4").write_bytes(NOT_A_RECORDING[:4000])
    (archive_dir / "2026-11-20_10-00-04.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + NOT_A_RECORDING[:3000])
    write(archive_dir / "no-time-here.avi", T0, spec=SegmentSpec(vcodec="mjpeg", width=160, height=120, acodec=None))
    write(archive_dir / "2026-11-20_10-00-06.mp4", T0 + timedelta(seconds=6))
    (archive_dir / "notes.txt").write_text("not video")
    camera = make_camera(archive_dir)

    summary = index_camera(camera)

    assert [r[0] for r in indexed(camera)] == ["2026-11-20_10-00-00.mp4", "2026-11-20_10-00-06.mp4"]
    assert sorted(summary.failed) == [
        "2026-11-20_10-00-02.mp4", "2026-11-20_10-00-04.mkv", "no-time-here.avi",
    ]
    assert "3 unreadable" in str(summary)


def test_unreadable_files_are_not_probed_again_until_they_change(archive_dir, count_probes):
    broken = archive_dir / "2026-11-20_10-00-02.mp4"
    broken.write_bytes(NOT_A_RECORDING[:4000])
    camera = make_camera(archive_dir)
    assert index_camera(camera).failed == [broken.name]
    assert index_camera(camera).failed == [broken.name]
    assert count_probes == [broken.name]

    write(broken, T0 + timedelta(seconds=2))  # the recorder rewrote it
    summary = index_camera(camera)
    assert (summary.added, summary.failed) == (1, [])
    assert count_probes == [broken.name, broken.name]


# -- incremental ---------------------------------------------------------------------------------


def test_unchanged_files_are_not_probed_again_and_deleted_ones_drop_out(archive_dir, count_probes):
    paths = [write(frigate_path(archive_dir, "front", T0 + timedelta(seconds=s)), T0 + timedelta(seconds=s)) for s in (0, 2, 4)]
    camera = make_camera(archive_dir)

    assert index_camera(camera).added == 3
    assert len(count_probes) == 3

    again = index_camera(camera)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 3)
    assert len(count_probes) == 3

    paths[1].unlink()
    new = write(frigate_path(archive_dir, "front", T0 + timedelta(seconds=6)), T0 + timedelta(seconds=6))
    third = index_camera(camera)
    assert (third.added, third.removed, third.unchanged) == (1, 1, 2)
    assert count_probes[3:] == [new.name]
    assert [r[0].rsplit("/", 1)[1] for r in indexed(camera)] == ["00.00.mp4", "00.04.mp4", "00.06.mp4"]
    assert third.gaps == 1


def test_growing_mpegts_is_indexed_now_and_refreshed_later(archive_dir, tmp_path):
    older = write(archive_dir / "20261120T095958.ts", T0 - timedelta(seconds=2))
    age(older)
    full = write(tmp_path / "full.ts", T0, 4.0)
    growing = archive_dir / "20261120T100000.ts"
    data = full.read_bytes()
    growing.write_bytes(data[: len(data) // 2 // 188 * 188])
    camera = make_camera(archive_dir)

    index_camera(camera)
    first = Segment.objects.get(path=growing.name)
    assert not first.complete
    assert Segment.objects.get(path=older.name).complete
    partial = (first.end - first.start).total_seconds()
    assert 1.0 < partial < 4.0

    shutil.copyfile(full, growing)
    summary = index_camera(camera)
    assert (summary.updated, summary.unchanged) == (1, 1)
    refreshed = Segment.objects.get(path=growing.name)
    assert_close(refreshed.end, T0 + timedelta(seconds=4))
    assert camera.__class__.objects.get(pk=camera.pk).max_segment_seconds == pytest.approx(4.0)

    age(growing)
    index_camera(camera)
    assert Segment.objects.get(path=growing.name).complete


def test_plain_mp4_without_index_is_picked_up_once_complete(archive_dir, tmp_path):
    full = write(tmp_path / "full.mp4", T0)
    target = archive_dir / "2026-11-20_10-00-00.mp4"
    target.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    # a recorder that writes moov last: cut off before it
    camera = make_camera(archive_dir)

    summary = index_camera(camera)
    assert (summary.segments, summary.pending, summary.failed) == (0, 1, [])

    shutil.copyfile(full, target)
    summary = index_camera(camera)
    assert (summary.added, summary.pending) == (1, 0)
    assert_close(indexed(camera)[0][2], T0 + timedelta(seconds=2))


def test_recent_only_looks_at_the_newest_folders(archive_dir, count_probes):
    for minute in (0, 1):
        start = T0 + timedelta(minutes=minute)
        age(write(frigate_path(archive_dir, "front", start), start))
    camera = make_camera(archive_dir)
    index_camera(camera)
    count_probes.clear()

    next_hour = T0 + timedelta(hours=1)
    write(frigate_path(archive_dir, "front", next_hour), next_hour)
    late = T0 - timedelta(hours=1)  # an older folder: left to the full scan
    write(frigate_path(archive_dir, "front", late), late)
    early = T0 + timedelta(seconds=30)  # sorts before the newest file of its folder: also
    write(frigate_path(archive_dir, "front", early), early)

    summary = index_camera(camera, recent_only=True)
    assert count_probes == ["00.00.mp4"]
    assert (summary.added, summary.removed) == (1, 0)
    assert archive.last_recorded_frame(camera) == Segment.objects.order_by("-start").first().end
    assert_close(archive.last_recorded_frame(camera), next_hour + timedelta(seconds=2))

    assert index_camera(camera).added == 2


# -- daylight saving time -------------------------------------------------------------------------

BERLIN_FALL_BACK = [
    # (folder, local name, UTC start): 2026-10-25 03:00 CEST -> 02:00 CET, 02:xx happens twice
    ("a", "2026-10-25_01-30-00", datetime(2026, 10, 24, 23, 30, tzinfo=UTC)),
    ("a", "2026-10-25_02-00-00", datetime(2026, 10, 25, 0, 0, tzinfo=UTC)),
    ("a", "2026-10-25_02-30-00", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ("b", "2026-10-25_02-00-00", datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
    ("b", "2026-10-25_02-30-00", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
    ("b", "2026-10-25_03-00-00", datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),
]


def _write_fall_back(archive_dir, rows, *, creation_time: bool, mtime_in_order: bool):
    for index, (folder, name, start) in enumerate(rows):
        path = write(archive_dir / folder / f"{name}.mkv", start, 1.0,
                     creation_time=start if creation_time else None)
        stamp = (start.timestamp() + 1) if mtime_in_order else 1_700_000_000 + index % 2
        os.utime(path, (stamp, stamp))


def test_repeated_fall_back_hour_resolved_by_write_order(archive_dir):
    _write_fall_back(archive_dir, BERLIN_FALL_BACK, creation_time=False, mtime_in_order=True)
    camera = make_camera(archive_dir, timezone="Europe/Berlin")

    index_camera(camera)

    got = {(p.split("/")[0], p.split("/")[1][:-4]): start for p, start, _ in indexed(camera)}
    for folder, name, expected in BERLIN_FALL_BACK:
        assert_close(got[(folder, name)], expected)
    assert len(set(got.values())) == len(BERLIN_FALL_BACK)


def test_repeated_hour_second_pass_arriving_later_is_placed_after_the_first(archive_dir):
    camera = make_camera(archive_dir, timezone="Europe/Berlin")
    _write_fall_back(archive_dir, BERLIN_FALL_BACK[:3], creation_time=False, mtime_in_order=True)
    index_camera(camera)
    _write_fall_back(archive_dir, BERLIN_FALL_BACK[3:], creation_time=False, mtime_in_order=True)
    index_camera(camera)
    starts = [start for _, start, _ in indexed(camera)]
    for start, (_, _, expected) in zip(starts, BERLIN_FALL_BACK, strict=True):
        assert_close(start, expected)


def test_repeated_hour_uses_creation_time_over_file_order(archive_dir):
    # Folder order and mtimes say nothing (copied files); the tag decides.
    swapped = [("z" if f == "a" else "c", n, s) for f, n, s in BERLIN_FALL_BACK]
    _write_fall_back(archive_dir, swapped, creation_time=True, mtime_in_order=False)
    camera = make_camera(archive_dir, timezone="Europe/Berlin")
    index_camera(camera)
    got = {p[:-4]: start for p, start, _ in indexed(camera)}
    for folder, name, expected in swapped:
        assert_close(got[f"{folder}/{name}"], expected)


@pytest.mark.parametrize("b_written_first", [False, True])
def test_same_repeated_name_in_two_folders_is_exported_once_each(archive_dir, b_written_first):
    # New York, 2026-11-01: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    first_pass, second_pass = ("b", "a") if b_written_first else ("a", "b")
    for folder, utc_hour in ((first_pass, 5), (second_pass, 6)):
        path = write(archive_dir / folder / "2026-11-01_01-30-00.mkv",
                     datetime(2026, 11, 1, utc_hour, 30, tzinfo=UTC), 1.0)
        os.utime(path, (1_800_000_000 + utc_hour, 1_800_000_000 + utc_hour))
    camera = make_camera(archive_dir, timezone="America/New_York")
    index_camera(camera)
    got = {p.split("/")[0]: start for p, start, _ in indexed(camera)}
    assert got[first_pass] == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert got[second_pass] == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_spring_forward_names_are_neither_lost_nor_doubled(archive_dir):
    # 2026-03-29 02:00 CET -> 03:00 CEST: no wall time 02:xx exists.
    rows = [
        ("2026-03-29_01-59-58.mkv", datetime(2026, 3, 29, 0, 59, 58, tzinfo=UTC), None),
        ("2026-03-29_03-00-00.mkv", datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC), None),
        # a clock that had not moved forward yet writes 02:30 at 01:30 UTC ...
        ("2026-03-29_02-30-00.mkv", datetime(2026, 3, 29, 1, 30, 0, tzinfo=UTC), None),
        # ... unless the container says otherwise
        ("2026-03-29_02-45-00.mkv", datetime(2026, 3, 29, 0, 45, 0, tzinfo=UTC), "tag"),
    ]
    for name, start, tag in rows:
        write(archive_dir / name, start, 1.0, creation_time=start if tag else None)
    camera = make_camera(archive_dir, timezone="Europe/Berlin")
    index_camera(camera)
    got = {p: start for p, start, _ in indexed(camera)}
    for name, expected, _ in rows:
        assert_close(got[name], expected)


# -- paths ------------------------------------------------------------------------------------------


def test_symlinks_leading_outside_the_archive_are_not_followed(archive_dir, tmp_path):
    outside = tmp_path / "outside"
    write(outside / "2026-11-20_10-00-00.mkv", T0)
    (archive_dir / "2026-11-20_10-00-00.mkv").symlink_to(outside / "2026-11-20_10-00-00.mkv")
    (archive_dir / "linked-dir").symlink_to(outside, target_is_directory=True)
    write(archive_dir / "real" / "2026-11-20_10-00-02.mkv", T0 + timedelta(seconds=2))
    (archive_dir / "alias").symlink_to(archive_dir / "real", target_is_directory=True)
    (archive_dir / "latest.mkv").symlink_to(archive_dir / "real" / "2026-11-20_10-00-02.mkv")
    camera = make_camera(archive_dir)

    index_camera(camera)

    assert [r[0] for r in indexed(camera)] in (
        ["real/2026-11-20_10-00-02.mkv"], ["alias/2026-11-20_10-00-02.mkv"],
    )


def test_segment_abspath_refuses_paths_outside_the_archive(archive_dir):
    camera = make_camera(archive_dir)
    inside = Segment(camera=camera, path="a/b.mp4")
    assert archive.segment_abspath(camera, inside) == archive_dir.resolve() / "a" / "b.mp4"
    for bad in ("../secret.mp4", "/etc/passwd", "a/../../x.mp4"):
        with pytest.raises(ArchiveError):
            archive.segment_abspath(camera, Segment(camera=camera, path=bad))


def test_missing_archive_folder_is_a_clear_error(tmp_path):
    camera = make_camera(tmp_path / "nowhere")
    with pytest.raises(ArchiveError, match="not a readable directory"):
        index_camera(camera)


# -- queries -------------------------------------------------------------------------------------


@pytest.fixture
def gappy_camera(archive_dir):
    """Recorded 10:00:00-10:00:04 and 10:00:06-10:00:08 (a 2 s gap)."""
    for offset in (0, 2, 6):
        start = T0 + timedelta(seconds=offset)
        age(write(frigate_path(archive_dir, "front", start), start, spec=SegmentSpec(width=160, height=120, acodec=None)))
    camera = make_camera(archive_dir)
    index_camera(camera)
    camera.refresh_from_db()
    return camera


def test_segments_covering_returns_ordered_overlaps_and_gaps(gappy_camera):
    s = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731
    coverage = segments_covering(gappy_camera, s(1), s(7))
    assert [seg.path[-9:] for seg in coverage.segments] == ["00.00.mp4", "00.02.mp4", "00.06.mp4"]
    assert coverage.gaps == [(s(4), s(6))]
    assert coverage.recorded_seconds == pytest.approx(4.0)

    before_and_after = segments_covering(gappy_camera, s(-5), s(10))
    assert before_and_after.gaps == [(s(-5), s(0)), (s(4), s(6)), (s(8), s(10))]
    assert before_and_after.recorded_seconds == pytest.approx(6.0)

    # a segment ending exactly at the range start does not overlap it
    assert [seg.path[-9:] for seg in segments_covering(gappy_camera, s(4), s(5)).segments] == []
    assert segments_covering(gappy_camera, s(4), s(5)).gaps == [(s(4), s(5))]


def test_gap_threshold_follows_a_slow_frame_rate(archive_dir):
    # 1 fps: two frame intervals = 2 s, so a 1.5 s hole is no gap and a 2.5 s hole is one
    slow = SegmentSpec(width=160, height=120, acodec=None, fps=Fraction(1))
    for offset in (0, 3.5, 8):
        start = T0 + timedelta(seconds=offset)
        age(write(archive_dir / f"{start:%Y%m%dT%H%M%S.%f}.mkv", start, spec=slow))
    camera = make_camera(archive_dir)
    assert index_camera(camera).gaps == 1
    camera.refresh_from_db()
    coverage = segments_covering(camera, T0, T0 + timedelta(seconds=10))
    assert coverage.gaps == [(T0 + timedelta(seconds=5.5), T0 + timedelta(seconds=8))]


def test_small_holes_are_not_gaps(archive_dir):
    # 0.3 s apart: below max(2 frames, 0.5 s)
    for start in (T0, T0 + timedelta(seconds=2.3)):
        age(write(archive_dir / f"{start:%Y%m%dT%H%M%S.%f}.mkv", start))
    camera = make_camera(archive_dir)
    summary = index_camera(camera)
    assert summary.gaps == 0
    assert segments_covering(camera, T0, T0 + timedelta(seconds=4)).gaps == []


def test_recorded_intervals_and_coverage(gappy_camera):
    s = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731
    assert archive.recorded_intervals(gappy_camera, s(1), s(7)) == [(s(1), s(4)), (s(6), s(7))]
    coverage = archive.camera_coverage(gappy_camera)
    assert coverage["first"] == s(0)
    assert_close(coverage["last"], s(8))
    assert coverage["recorded_hours"] == pytest.approx(6 / 3600)
    assert coverage["gap_count"] == 1
    assert_close(archive.last_recorded_frame(gappy_camera), s(8))


def test_segments_covering_finds_a_long_segment_starting_well_before_the_range(archive_dir):
    age(write(archive_dir / "20261120T100000.mkv", T0, 6.0, spec=SegmentSpec(width=160, height=120, acodec=None, fps=Fraction(5))))
    camera = make_camera(archive_dir)
    stale = Camera.objects.get(pk=camera.pk)  # loaded before the index grew the bound
    index_camera(camera)
    camera.refresh_from_db()
    assert camera.max_segment_seconds == pytest.approx(6.0)
    coverage = segments_covering(stale, T0 + timedelta(seconds=5), T0 + timedelta(seconds=5.5))
    assert len(coverage.segments) == 1 and coverage.gaps == []


def test_index_all_cameras_skips_disabled_and_survives_a_broken_one(archive_dir, tmp_path):
    write(frigate_path(archive_dir, "front", T0), T0)
    make_camera(archive_dir)
    make_camera(tmp_path / "missing", camera_id="broken")
    make_camera(archive_dir, camera_id="off", enabled=False)
    summaries = {s.camera_id: s for s in archive.index_all_cameras()}
    assert set(summaries) == {"front", "broken"}
    assert summaries["front"].segments == 1
    assert summaries["broken"].failed
