"""Exports in parts (issue 13): MaxFileSize and ranges longer than one part.

The cut planner is tested on real frame indexes of generated segments, without decoding; the
job is run on a real Redis and every part it writes is decoded back, frame by frame.
"""

import io
import zipfile
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from django.test import Client

from exports.archive import index_camera
from exports.media.frameindex import Kind, build_index
from exports.media.parts import Budget, PartSplitter, SplitError, estimated_file_bytes
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import Camera, ExportTask
from tests import api_support
from tests.api_support import psim, run_worker
from tests.media_helpers import decode_with_pyav, frame_steps_ok

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

T1 = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)
NOISY = SegmentSpec(width=160, height=120, fps=Fraction(25), acodec="aac", noise=40)
SEGMENT_SECONDS = 4
FRAME = timedelta(milliseconds=40)


@pytest.fixture(scope="module")
def noisy_archive(tmp_path_factory):
    """Camera "p": four 4 s segments of noisy 160x120 H.264 + AAC, keyframe every second."""
    root = tmp_path_factory.mktemp("parts")
    for number in range(4):
        start = T1 + timedelta(seconds=number * SEGMENT_SECONDS)
        write_segment(frigate_path(root, "p", start), start, SEGMENT_SECONDS, NOISY)
    return root


@pytest.fixture
def parts_camera(db, noisy_archive, users):
    camera = Camera.objects.create(
        camera_id="p", name="Parking", archive_path=str(noisy_archive), layout="frigate"
    )
    index_camera(camera)
    camera.allowed_users.add(users["alice"])
    return camera


def indexed(root: Path):
    return [
        (T1 + timedelta(seconds=n * SEGMENT_SECONDS),
         build_index(frigate_path(root, "p", T1 + timedelta(seconds=n * SEGMENT_SECONDS))))
        for n in range(4)
    ]


# -- the cut planner, on indexes alone ---------------------------------------------------------


def test_cuts_fall_on_keyframes_and_keep_each_part_within_its_budget(noisy_archive):
    segments = indexed(noisy_archive)
    start, end = T1 + timedelta(milliseconds=520), T1 + timedelta(seconds=15)
    budget = Budget(max_bytes=estimated_file_bytes(int(segments[0][1].video.size.sum()), 100))
    splitter = PartSplitter(start, end, budget)
    for wall_start, index in segments:
        splitter.feed(wall_start, index, wall_start + timedelta(seconds=SEGMENT_SECONDS))
    cuts = splitter.finish()
    assert len(cuts) >= 3
    keyframes = {
        wall_start + timedelta(seconds=float((pts - index.video.pts.min()) * index.video.info.time_base))
        for wall_start, index in segments
        for pts in index.video.pts[index.video.kind == Kind.IDR]
    }
    assert set(cuts) <= keyframes and cuts == sorted(cuts)
    assert start < cuts[0] and cuts[-1] < end


def test_a_keyframe_off_the_microsecond_grid_is_never_a_cut(tmp_path):
    # 29.97 fps with a keyframe every 10 frames: 10 * 1001 / 30000 s is not a whole number of
    # microseconds, so a cut there would leave the frame before it in both parts.
    spec = SegmentSpec(width=64, height=48, fps=Fraction(30000, 1001), gop=10, acodec=None)
    path = tmp_path / "ntsc.mp4"
    write_segment(path, T1, 8, spec)
    index = build_index(path)
    splitter = PartSplitter(T1, T1 + timedelta(seconds=8), Budget(max_span=timedelta(seconds=0.5)))
    splitter.feed(T1, index, T1 + timedelta(seconds=8))
    cuts = splitter.finish()
    assert cuts, "the span forces cuts"
    for cut in cuts:
        assert (cut - T1) % timedelta(microseconds=1001000) == timedelta(0), cut


def test_a_gop_larger_than_the_limit_fails_naming_the_limit_that_would_work(noisy_archive):
    segments = indexed(noisy_archive)
    splitter = PartSplitter(T1, T1 + timedelta(seconds=16), Budget(max_bytes=70_000))
    with pytest.raises(SplitError, match="ask for a MaxFileSize of at least"):
        for wall_start, index in segments:
            splitter.feed(wall_start, index, wall_start + timedelta(seconds=SEGMENT_SECONDS))
        splitter.finish()


def test_split_by_time_alone_cuts_at_segment_starts_within_the_span():
    splitter = PartSplitter(T1, T1 + timedelta(hours=60), Budget(max_span=timedelta(hours=24)))
    for hour in range(60):
        at = T1 + timedelta(hours=hour, seconds=3)
        splitter.feed_span(at, at + timedelta(minutes=59))
    cuts = splitter.finish()
    assert cuts == [T1 + timedelta(hours=23, seconds=3), T1 + timedelta(hours=47, seconds=3)]


# -- the job: every part decoded ---------------------------------------------------------------


def run_task(client, capture, queue, max_file_size=None, **body):
    with capture(execute=True):
        response = client.create(**body)
    assert response.status_code == 200, response.json()
    task = ExportTask.objects.get(id=response.json()["ArchiveTaskId"])
    if max_file_size is not None:  # below the API's 1 MiB floor: the job honours any limit
        ExportTask.objects.filter(id=task.id).update(max_file_size=max_file_size)
    run_worker(queue)
    task.refresh_from_db()
    return task


def download(client, url) -> bytes:
    response = client.get(url.split("testserver", 1)[-1])
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_max_file_size_splits_into_contiguous_playable_parts(
    parts_camera, alice, exports_queue, django_capture_on_commit_callbacks, tmp_path
):
    start, end = T1 + timedelta(milliseconds=520), T1 + timedelta(seconds=15, milliseconds=200)
    limit = 120_000
    task = run_task(
        alice, django_capture_on_commit_callbacks, exports_queue, max_file_size=limit,
        CameraId="p", From=psim(start), To=psim(end), MaxFileSize=2**20,
    )
    assert task.state == "ReadyForDownload", task.error_message
    status = alice.status(task.id).json()
    parts = status["Parts"]
    assert len(parts) >= 3
    assert parts[0]["Url"] == status["Url"]
    assert (parts[0]["From"], parts[-1]["To"]) == (
        "2026-11-21T08:00:00.520Z", "2026-11-21T08:00:15.200Z"
    )
    assert all(a["To"] == b["From"] for a, b in zip(parts, parts[1:], strict=False))
    walls = []
    anonymous = Client()
    for number, part in enumerate(parts, start=1):
        data = download(anonymous, part["Url"])  # a signed link: no credentials
        assert len(data) == part["Bytes"] <= limit
        path = tmp_path / f"part{number}.mp4"
        path.write_bytes(data)
        decoded = decode_with_pyav(path)
        assert decoded.audio is not None and len(decoded.audio)
        assert decoded.walls, f"part {number} has no frames"
        assert not frame_steps_ok(decoded.walls, FRAME), f"part {number} skips or repeats"
        if walls:  # the first frame of a part follows the last of the one before
            assert decoded.walls[0] - walls[-1] == FRAME, (number, walls[-1], decoded.walls[0])
        walls += decoded.walls
    # Together, exactly the frames on screen in [From, To): none lost, none repeated.
    assert walls[0] == datetime(2026, 11, 21, 8, 0, 0, 520000, tzinfo=UTC)
    assert walls[-1] == datetime(2026, 11, 21, 8, 0, 15, 160000, tzinfo=UTC)
    assert len(walls) == len(set(walls)) == 367
    assert task.size == sum(part["Bytes"] for part in parts)
    assert task.details["parts"][0]["file"].endswith("_part01.mp4")


def parted_task(client, capture, queue, seconds: int):
    """A ready task of camera "p" from T1, in parts of at most 150 kB."""
    task = run_task(
        client, capture, queue, max_file_size=150_000,
        CameraId="p", From=psim(T1), To=psim(T1 + timedelta(seconds=seconds)), MaxFileSize=2**20,
    )
    assert task.state == "ReadyForDownload", task.error_message
    assert len(task.parts) > 1
    return task


def test_parts_are_listed_zipped_and_removed_with_the_task(
    parts_camera, alice, exports_queue, django_capture_on_commit_callbacks, settings
):
    task = parted_task(alice, django_capture_on_commit_callbacks, exports_queue, 12)
    page = Client()
    page.login(username="alice", password="alice-secret-pw")
    detail = page.get(f"/tasks/{task.id}/").content.decode()
    for number, part in enumerate(task.parts, start=1):
        assert part["file"] in detail
        assert f"/tasks/{task.id}/download/?part={number}" in detail
        single = page.get(f"/tasks/{task.id}/download/", {"part": number})
        assert single.status_code == 200
        assert int(single["Content-Length"]) == part["bytes"]
    response = page.get(f"/tasks/{task.id}/parts.zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert [(i.filename, i.file_size) for i in archive.infolist()] == [
        (p["file"], p["bytes"]) for p in task.parts
    ]
    folder = Path(settings.EXPORTS_DIR) / str(task.id)
    assert f"/tasks/{task.id}/package/" in detail  # every part is signed (see Evidence below)
    # The parts and the signed manifest (exports/manifest.py) of the export.
    expected = [p["file"] for p in task.parts] + ["manifest.json", "manifest.sig"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    admin = Client()
    admin.login(username="root", password="root-secret-pw")
    row = admin.get("/admin/exports/exporttask/").content.decode()
    assert f"{len(task.parts)} parts, ≤ 146.5\xa0KB each" in row
    listing = page.get("/tasks/").content.decode()
    assert f"/tasks/{task.id}/parts.zip" in listing and f"Download {len(task.parts)} parts" in listing
    alice.post("/deletearchivetask", {"ArchiveTaskId": str(task.id)})
    assert not folder.exists()
    assert alice.status(task.id).json()["Parts"] == []


def test_a_part_of_a_task_you_cannot_see_is_404_and_a_bad_part_number_too(
    parts_camera, alice, bob, exports_queue, django_capture_on_commit_callbacks
):
    task = parted_task(alice, django_capture_on_commit_callbacks, exports_queue, 8)
    assert bob.get("/download", {"file": str(task.id), "part": "2"}).status_code == 404
    assert alice.get("/download", {"file": str(task.id), "part": "2"}).status_code == 200
    for bad in ("0", "99", "x", "-1"):
        assert alice.get("/download", {"file": str(task.id), "part": bad}).status_code == 404
    url = alice.status(task.id).json()["Parts"][1]["Url"]
    forged = url.replace("part=2", "part=1")
    assert Client().get(forged.split("testserver", 1)[1]).status_code == 401


def test_without_max_file_size_the_status_is_unchanged(
    cameras, alice, exports_queue, django_capture_on_commit_callbacks
):
    task = run_task(
        alice, django_capture_on_commit_callbacks, exports_queue,
        CameraId="1", From=psim(api_support.T0), To=psim(api_support.T0 + timedelta(seconds=4)),
    )
    status = alice.status(task.id).json()
    assert set(status) == {  # PSIM's fields and the evidence package's link, no Parts
        "Percents", "Url", "PackageUrl", "CameraId", "From", "To", "ArchiveTaskId",
        "ErrorMessage", "State",
    }
    assert task.parts == [] and not any(p.name.endswith("_part01.mp4") for p in
                                        (Path(api_support.settings_exports_dir()) / str(task.id)).iterdir())


@pytest.mark.parametrize(
    "value, message",
    [
        (1000, "below the smallest limit, 1048576 bytes"),
        ("big", "must be a whole number of bytes"),
        (True, "must be a whole number of bytes"),
        (1.5, "must be a whole number of bytes"),
    ],
)
def test_max_file_size_is_checked(cameras, alice, value, message):
    response = alice.create(
        CameraId="1", From=psim(api_support.T0), To=psim(api_support.T0 + timedelta(seconds=4)),
        MaxFileSize=value,
    )
    assert response.status_code == 400
    assert response.json()["ErrorMessage"].startswith("MaxFileSize ")
    assert message in response.json()["ErrorMessage"]


# -- long ranges: parts of at most PSIMEXPORT_PART_HOURS ---------------------------------------

T2 = datetime(2026, 11, 22, 0, 0, 0, tzinfo=UTC)
SMALL = SegmentSpec(width=160, height=120, fps=Fraction(25), acodec=None)


@pytest.fixture
def sparse_camera(db, tmp_path, users):
    """Camera "s": 2 s recorded at T2, T2 + 20 h and T2 + 28 h (a camera recording on motion)."""
    for hours in (0, 20, 28):
        start = T2 + timedelta(hours=hours)
        write_segment(frigate_path(tmp_path, "s", start), start, 2, SMALL)
    camera = Camera.objects.create(camera_id="s", archive_path=str(tmp_path), layout="frigate")
    index_camera(camera)
    camera.allowed_users.add(users["alice"])
    return camera


def test_a_range_over_24_hours_is_exported_in_parts_of_at_most_24_hours(
    sparse_camera, alice, exports_queue, django_capture_on_commit_callbacks, tmp_path
):
    task = run_task(
        alice, django_capture_on_commit_callbacks, exports_queue,
        CameraId="s", From=psim(T2), To=psim(T2 + timedelta(hours=30)),
    )
    assert task.state == "ReadyForDownload", task.error_message
    status = alice.status(task.id).json()
    spans = [(p["From"], p["To"]) for p in status["Parts"]]
    # Cut at the start of a recording, the last one within 24 h of the part's start.
    assert spans == [
        ("2026-11-22T00:00:00.000Z", "2026-11-22T20:00:00.000Z"),
        ("2026-11-22T20:00:00.000Z", "2026-11-23T06:00:00.000Z"),
    ]
    firsts = []
    for number, part in enumerate(status["Parts"], start=1):
        path = tmp_path / f"long{number}.mp4"
        path.write_bytes(download(Client(), part["Url"]))
        decoded = decode_with_pyav(path)
        firsts.append(decoded.walls[0])
        assert len(decoded.walls) == 50 * number  # 2 s, then 2 s + 2 s
    assert firsts == [T2, T2 + timedelta(hours=20)]
    assert len(task.gaps) == 3  # before 20 h, between 20 h and 28 h, after 28 h


def test_parts_of_a_long_range_follow_each_other_frame_by_frame(
    cameras, alice, exports_queue, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.PSIMEXPORT_PART_HOURS = 2.5 / 3600  # parts of 2.5 s stand in for 24 h
    start = api_support.T0 + timedelta(milliseconds=480)
    task = run_task(
        alice, django_capture_on_commit_callbacks, exports_queue,
        CameraId="1", From=psim(start), To=psim(api_support.T0 + timedelta(seconds=6)),
    )
    assert task.state == "ReadyForDownload", task.error_message
    assert [p["from"] for p in task.parts] == [
        "2026-11-20T10:00:00.480Z", "2026-11-20T10:00:02.000Z", "2026-11-20T10:00:04.000Z"
    ]
    page = Client()
    page.login(username="alice", password="alice-secret-pw")
    walls = []
    for number, part in enumerate(task.parts, start=1):
        path = tmp_path / part["file"]
        path.write_bytes(download(page, f"/tasks/{task.id}/download/?part={number}"))
        walls += decode_with_pyav(path).walls
    assert walls[0] == start and len(walls) == len(set(walls)) == 138
    assert not frame_steps_ok(walls, FRAME)


def test_a_part_over_the_limit_is_split_again_until_it_fits(
    parts_camera, alice, exports_queue, django_capture_on_commit_callbacks, monkeypatch, tmp_path
):
    from exports.media import parts as planner

    # An estimator that believes parts are a third smaller than they come out.
    monkeypatch.setattr(planner, "PACKET_OVERHEAD", 0)
    monkeypatch.setattr(planner, "FILE_OVERHEAD", 0)
    monkeypatch.setattr(planner, "MARGIN", -0.5)
    limit = 150_000
    task = run_task(
        alice, django_capture_on_commit_callbacks, exports_queue, max_file_size=limit,
        CameraId="p", From=psim(T1), To=psim(T1 + timedelta(seconds=12)), MaxFileSize=2**20,
    )
    assert task.state == "ReadyForDownload", task.error_message
    assert all(part["bytes"] <= limit for part in task.parts)
    walls = []
    for part in task.parts:
        path = Path(api_support.settings_exports_dir()) / str(task.id) / part["file"]
        walls += decode_with_pyav(path).walls
    assert walls[0] == T1 and len(walls) == len(set(walls)) == 300
    assert not frame_steps_ok(walls, FRAME)


def test_a_limit_below_one_gop_fails_the_task_saying_what_would_work(
    parts_camera, alice, exports_queue, django_capture_on_commit_callbacks, settings
):
    task = run_task(
        alice, django_capture_on_commit_callbacks, exports_queue, max_file_size=20_000,
        CameraId="p", From=psim(T1), To=psim(T1 + timedelta(seconds=6)), MaxFileSize=2**20,
    )
    assert task.state == "Failed"
    assert "ask for a MaxFileSize of at least" in task.error_message
    assert not (Path(settings.EXPORTS_DIR) / str(task.id)).exists()


def test_export_archive_writes_a_long_range_in_parts_beside_the_output(cameras, settings, tmp_path):
    import json

    from django.core.management import call_command

    settings.PSIMEXPORT_PART_HOURS = 2.5 / 3600
    out = io.StringIO()
    call_command(
        "export_archive", "1", psim(api_support.T0), psim(api_support.T0 + timedelta(seconds=6)),
        output=str(tmp_path / "clip.mp4"), stdout=out,
    )
    summary = json.loads(out.getvalue())
    assert summary["parts"] == [str(tmp_path / f"clip_part0{n}.mp4") for n in (1, 2, 3)]
    assert summary["output"] == summary["parts"][0]
    assert summary["bytes"] == sum(Path(p).stat().st_size for p in summary["parts"])
    walls = [w for p in summary["parts"] for w in decode_with_pyav(Path(p)).walls]
    assert len(walls) == len(set(walls)) == 150 and not frame_steps_ok(walls, FRAME)
    manifest = tmp_path / "clip_part01.mp4.manifest.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip_part01.mp4", "clip_part01.mp4.manifest.json", "clip_part01.mp4.manifest.sig",
        "clip_part02.mp4", "clip_part03.mp4",
    ]
    # The manifest beside the first part signs all three; the others are found beside it.
    assert [p["file_name"] for p in json.loads(manifest.read_bytes())["parts"]] == [
        "clip_part01.mp4", "clip_part02.mp4", "clip_part03.mp4"
    ]
    out = io.StringIO()
    call_command("verify_export", summary["parts"][0], str(manifest), stdout=out)
    assert "VERDICT: INTACT" in out.getvalue() and "part 3 of 3, clip_part03.mp4:" in out.getvalue()
    Path(summary["parts"][1]).unlink()
    with pytest.raises(SystemExit):
        call_command("verify_export", summary["parts"][0], str(manifest), stdout=out)
    assert "FAIL part 2 of 3, clip_part02.mp4 is missing" in out.getvalue()


# -- evidence of an export in parts: every part signed, packaged and checked ---------------------


def _package(client, task) -> bytes:
    response = client.get("/download", {"file": str(task.id), "package": "1"})
    assert response.status_code == 200, response.content[:300]
    return b"".join(response.streaming_content)


def _verdict(data: bytes):
    from exports import signing_keys, verify

    reports = verify.check_members(verify.ZipMembers(io.BytesIO(data)), signing_keys.trusted_keys())
    return all(r.ok for r in reports), "\n".join(verify.verdict_lines(reports))


def _rezip(data: bytes, change) -> bytes:
    """The package with each member's content passed through change(name, content) (None
    drops the member)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = change(info.filename, source.read(info))
            if content is not None:
                target.writestr(info.filename, content)
    return out.getvalue()


def test_the_evidence_package_of_an_export_in_parts_signs_and_holds_every_part(
    parts_camera, alice, exports_queue, django_capture_on_commit_callbacks, tmp_path
):
    import json
    import subprocess
    import sys

    task = parted_task(alice, django_capture_on_commit_callbacks, exports_queue, 12)
    count = len(task.parts)
    data = _package(alice, task)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
        manifest = json.loads(archive.read("manifest.json"))
        archive.extractall(tmp_path / "unpacked")
    assert {p["file"]: p["bytes"] for p in task.parts}.items() <= sizes.items()
    assert manifest["format"] == "psimexport-manifest/2"
    assert [(p["file_name"], p["size"], p["sha256"], p["frames"]) for p in manifest["parts"]] == [
        (p["file"], p["bytes"], p["sha256"], p["frames"]) for p in task.parts
    ]
    # Each part's range to the microsecond (the API's to the millisecond), end to end.
    assert [(p["from"][:23], p["to"][:23]) for p in manifest["parts"]] == [
        (p["from"][:-1], p["to"][:-1]) for p in task.parts
    ]
    assert manifest["output"]["file_name"] == task.parts[0]["file"]
    assert manifest["streams"]["video"] == {"codec": "h264", "technique": task.technique}
    assert manifest["streams"]["audio"]["codec"] == "aac"
    assert manifest["output"]["sha256"] == task.sha256 == task.parts[0]["sha256"]
    # Every recorded file any part read, once (a segment across a cut feeds two parts).
    assert [s["path"] for s in manifest["sources"]] == sorted(
        s.path for s in parts_camera.segments.filter(start__lt=T1 + timedelta(seconds=12))
    )
    assert all(s["sha256"] for s in manifest["sources"])
    ok, verdict = _verdict(data)
    assert ok, verdict
    for number, part in enumerate(task.parts, start=1):
        assert f"OK   part {number} of {count}, {part['file']}: {part['bytes']} bytes" in verdict
    # The offline script, as shipped in the package, in the extracted folder.
    script = tmp_path / "unpacked" / "verify.py"
    done = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "VERDICT: INTACT" in done.stdout, done.stdout + done.stderr

    second = task.parts[1]["file"]
    changed = _rezip(data, lambda name, content: content if name != second else
                     content[:500] + bytes([content[500] ^ 1]) + content[501:])
    ok, verdict = _verdict(changed)
    assert not ok and "VERDICT: NOT INTACT" in verdict
    assert f"FAIL part 2 of {count}, {second} differs from the exported one" in verdict
    assert f"OK   part 1 of {count}" in verdict and "signature valid" in verdict

    dropped = _rezip(data, lambda name, content: None if name == second else content)
    ok, verdict = _verdict(dropped)
    assert not ok and f"FAIL part 2 of {count}, {second} is missing" in verdict
    (tmp_path / "unpacked" / second).unlink()
    done = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and f"{second} is missing" in done.stdout, done.stdout

