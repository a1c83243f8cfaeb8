"""The review page's server side: access rules, headers, audit, the index, and the media
pieces (decoded back: every frame's bar code is the wall time the piece's headers place it at).
The browser side is tests/test_e2e_review.py."""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import av
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from exports import review
from exports.archive import index_camera
from exports.media import playback, synth
from exports.media.synth import SegmentSpec, frigate_path, write_segment
from exports.models import AuditEvent, Camera, ExportTask, Segment

pytestmark = pytest.mark.django_db

SPEC = SegmentSpec(width=320, height=240, fps=Fraction(25), gop=25, acodec="aac")
BASE = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
SECOND = timedelta(seconds=1)
FRAME = timedelta(milliseconds=40)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Camera "1": 12 s and 4 s segments with a 2 s gap between; camera "2": HEVC + G.711."""
    root = tmp_path_factory.mktemp("review-recordings")
    write_segment(frigate_path(root, "1", BASE), BASE, 12, SPEC)
    write_segment(frigate_path(root, "1", BASE + 14 * SECOND), BASE + 14 * SECOND, 4, SPEC)
    hevc = SegmentSpec(
        width=320, height=240, fps=Fraction(25), vcodec="hevc", acodec="pcm_mulaw", sample_rate=8000
    )
    write_segment(root / "hevc" / BASE.strftime("%Y-%m-%d_%H-%M-%S.mov"), BASE, 3, hevc)
    old = time.time() - 3600
    for path in root.rglob("*.*"):
        os.utime(path, (old, old))
    return root


@pytest.fixture
def cameras(recordings):
    one = Camera.objects.create(camera_id="1", archive_path=str(recordings), layout="frigate")
    two = Camera.objects.create(camera_id="2", archive_path=str(recordings / "hevc"))
    for camera in (one, two):
        index_camera(camera)
    return one, two


@pytest.fixture
def alice(cameras):
    """alice may see camera 1 only."""
    user = User.objects.create_user("alice", password="x")
    cameras[0].allowed_users.add(user)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin(cameras):
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


def segments(camera):
    return list(Segment.objects.filter(camera=camera).order_by("start"))


def piece_url(camera, segment, index, **query):
    url = reverse("review-piece", args=[camera.camera_id, segment.pk, index])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def decoded_walls(data: bytes) -> list[tuple[float, datetime]]:
    with av.open(io.BytesIO(data)) as container:
        return [
            (
                float(frame.pts * frame.time_base),
                synth.frame_wall_time(frame.to_ndarray(format="gray")),
            )
            for frame in container.decode(video=0)
        ]


def review_urls(camera, segment):
    iso = BASE.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        reverse("review", args=[camera.camera_id]) + f"?t={iso}",
        reverse("review-index", args=[camera.camera_id]) + f"?from={iso}&to={iso[:-1]}.5Z",
        reverse("review-frame", args=[camera.camera_id]) + f"?t={iso}",
        piece_url(camera, segment, 0),
    ]


# -- access -----------------------------------------------------------------------------------


def test_review_urls_need_a_session(cameras):
    for url in review_urls(cameras[0], segments(cameras[0])[0]):
        response = Client().get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"], url


def test_a_camera_not_granted_is_404_on_every_review_url(alice, cameras):
    for url in review_urls(cameras[1], segments(cameras[1])[0]):
        assert alice.get(url).status_code == 404, url


def test_a_segment_of_another_camera_is_404_through_a_granted_camera(alice, cameras):
    foreign = segments(cameras[1])[0]
    assert alice.get(piece_url(cameras[0], foreign, 0)).status_code == 404


def test_review_responses_are_private_and_never_stored(alice, cameras):
    for url in review_urls(cameras[0], segments(cameras[0])[0]):
        response = alice.get(url)
        assert response.status_code == 200, url
        assert "private" in response["Cache-Control"] and "no-store" in response["Cache-Control"], (
            url
        )


def test_opening_the_page_is_audited_as_a_view_and_pieces_are_not_downloads(alice, cameras):
    seg = segments(cameras[0])[0]
    alice.get(reverse("review", args=["1"]) + f"?t={BASE:%Y-%m-%dT%H:%M:%S}Z")
    for index in (0, 1):
        assert alice.get(piece_url(cameras[0], seg, index)).status_code == 200
    events = list(AuditEvent.objects.all())
    assert [(e.action, e.camera_id, e.username, e.task_id) for e in events] == [
        ("view", "1", "alice", None)
    ]
    assert events[0].detail == {"at": f"{BASE:%Y-%m-%dT%H:%M:%S}.000Z"}


def test_page_starts_at_t_and_carries_the_urls_the_player_needs(alice, cameras):
    at = BASE + timedelta(seconds=3, milliseconds=120)
    response = alice.get(reverse("review", args=["1"]) + f"?t={at:%Y-%m-%dT%H:%M:%S}.120Z")
    html = response.content.decode()
    assert f'data-at="{round(at.timestamp() * 1000, 3)}"' in html
    assert reverse("review-index", args=["1"]) in html
    assert 'name="csrfmiddlewaretoken"' in html  # the Export In–Out form posts to /export/


# -- the index --------------------------------------------------------------------------------


def test_index_lists_segments_spans_gaps_and_exports_of_the_camera(alice, cameras):
    camera = cameras[0]
    user = User.objects.get(username="alice")
    ExportTask.objects.create(
        camera=camera,
        requested_from=BASE,
        start=BASE + SECOND,
        end=BASE + 2 * SECOND,
        format="mp4",
        requested_by=user,
    )
    url = reverse("review-index", args=["1"])
    body = alice.get(
        url
        + f"?from={BASE - 10 * SECOND:%Y-%m-%dT%H:%M:%S}Z&to={BASE + 30 * SECOND:%Y-%m-%dT%H:%M:%S}Z"
    ).json()
    ms = lambda moment: round(moment.timestamp() * 1000, 3)  # noqa: E731
    assert [(s["start"], s["end"], s["proxy"]) for s in body["segments"]] == [
        (ms(BASE), ms(BASE + 12 * SECOND), False),
        (ms(BASE + 14 * SECOND), ms(BASE + 18 * SECOND), False),
    ]
    assert body["spans"] == [
        [ms(BASE), ms(BASE + 12 * SECOND)],
        [ms(BASE + 14 * SECOND), ms(BASE + 18 * SECOND)],
    ]
    assert [ms(BASE + 12 * SECOND), ms(BASE + 14 * SECOND)] in body["gaps"]
    assert [(e["start"], e["end"]) for e in body["exports"]] == [
        (ms(BASE + SECOND), ms(BASE + 2 * SECOND))
    ]
    assert alice.get(url + "?from=yesterday&to=today").status_code == 400


def test_hevc_with_g711_is_marked_for_the_proxy(admin, cameras):
    iso = BASE.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = admin.get(reverse("review-index", args=["2"]) + f"?from={iso}&to={iso[:-1]}.5Z").json()
    assert [s["proxy"] for s in body["segments"]] == [True]


# -- pieces -----------------------------------------------------------------------------------


def test_copy_pieces_hold_every_frame_once_at_the_time_their_headers_say(alice, cameras):
    seg = segments(cameras[0])[0]
    shown = []
    for index in (0, 1):
        response = alice.get(piece_url(cameras[0], seg, index))
        assert response["Content-Type"] == "video/mp4"
        assert response["X-Piece-Technique"] == "copy"
        assert response["X-Codecs"].startswith("avc1.") and "mp4a.40.2" in response["X-Codecs"]
        start = float(response["X-Piece-Start"])
        assert start == index * playback.PIECE_SECONDS
        assert response["X-Piece-Last"] == ("1" if index == 1 else "0")
        for media_time, wall in decoded_walls(response.content):
            assert seg.start + timedelta(seconds=start + media_time) == wall
            shown.append(wall)
    assert shown == [BASE + n * FRAME for n in range(12 * 25)]


def test_video_only_piece_when_the_page_asks_without_audio(alice, cameras):
    seg = segments(cameras[0])[0]
    response = alice.get(piece_url(cameras[0], seg, 0, audio=0))
    with av.open(io.BytesIO(response.content)) as container:
        assert not container.streams.audio
    assert response["X-Codecs"].startswith("avc1.") and "mp4a" not in response["X-Codecs"]


def test_at_returns_the_piece_holding_that_instant_when_a_gop_straddles_the_grid(tmp_path):
    # Keyframes every 3 s: none between 10 s and the end at 12 s, so the frame at 10.5 s
    # belongs to piece 0, which runs from 0 s to the end.
    path = tmp_path / "long-gop.mp4"
    write_segment(path, BASE, 12, SegmentSpec(width=160, height=120, gop=75, acodec=None))
    piece = playback.copy_piece(path, playback.piece_index_at(10.5), at=10.5)
    assert (piece.index, piece.start, piece.end, piece.last) == (0, 0, 12, True)
    with pytest.raises(playback.PieceError):
        playback.copy_piece(path, 1)


def test_pieces_of_mpegts_with_running_timestamps_count_from_the_first_frame(tmp_path):
    path = tmp_path / "running.ts"
    write_segment(
        path, BASE, 12, SegmentSpec(width=160, height=120, acodec="aac"), pts_origin=5000.0
    )
    piece = playback.copy_piece(path, 1)
    assert piece.start == 10
    walls = decoded_walls(piece.data)
    assert walls[0][1] == BASE + 10 * SECOND and len(walls) == 50


def test_proxy_piece_is_h264_at_the_same_times(admin, cameras):
    seg = segments(cameras[1])[0]
    response = admin.get(piece_url(cameras[1], seg, 0))
    assert response["X-Piece-Technique"] == "proxy"
    with av.open(io.BytesIO(response.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
    # Proxy pieces are short (they are encoded before they are sent) and keep the frames' times.
    shown = []
    for index in (0, 1):
        response = admin.get(piece_url(cameras[1], seg, index, audio=0))
        start = float(response["X-Piece-Start"])
        assert start == index * playback.PROXY_PIECE_SECONDS
        for media_time, wall in decoded_walls(response.content):
            assert BASE + timedelta(seconds=start + media_time) == wall
            shown.append(wall)
    assert shown == [BASE + n * FRAME for n in range(3 * 25)]


def test_proxy_pieces_beyond_the_cap_get_503(admin, cameras, settings, tmp_path, monkeypatch):
    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(review, "PROXY_WAIT_SECONDS", 0)
    seg = segments(cameras[1])[0]
    held = [review.proxy_slot() for _ in range(settings.PSIMEXPORT_PROXY_SLOTS)]
    assert all(slot.__enter__() for slot in held)
    try:
        response = admin.get(piece_url(cameras[1], seg, 0))
        assert response.status_code == 503 and response["Retry-After"]
    finally:
        for slot in held:
            slot.__exit__(None, None, None)
    assert admin.get(piece_url(cameras[1], seg, 0)).status_code == 200


def test_h264_with_g711_is_copied_when_the_player_asks_for_pictures_only(tmp_path, admin):
    root = tmp_path / "g711"
    spec = SegmentSpec(width=160, height=120, acodec="pcm_alaw", sample_rate=8000)
    write_segment(root / BASE.strftime("%Y-%m-%d_%H-%M-%S.mov"), BASE, 2, spec)
    camera = Camera.objects.create(camera_id="3", archive_path=str(root))
    index_camera(camera)
    seg = segments(camera)[0]
    assert admin.get(piece_url(camera, seg, 0, audio=0))["X-Piece-Technique"] == "copy"
    assert admin.get(piece_url(camera, seg, 0))["X-Piece-Technique"] == "proxy"


def test_copy_piece_forced_through_the_proxy(alice, cameras):
    seg = segments(cameras[0])[1]
    response = alice.get(piece_url(cameras[0], seg, 0, proxy=1, audio=0))
    assert response["X-Piece-Technique"] == "proxy"
    assert [wall for _, wall in decoded_walls(response.content)][:3] == [
        BASE + 14 * SECOND + n * FRAME for n in range(3)
    ]


# -- hover frames -----------------------------------------------------------------------------


def test_hover_frame_is_a_small_jpeg_of_the_keyframe_before(alice, cameras):
    at = BASE + timedelta(seconds=5, milliseconds=500)
    response = alice.get(reverse("review-frame", args=["1"]) + f"?t={at:%Y-%m-%dT%H:%M:%S}.500Z")
    assert response["Content-Type"] == "image/jpeg"
    with av.open(io.BytesIO(response.content)) as container:
        frame = next(container.decode(video=0))
    assert frame.width == review.PREVIEW_WIDTH
    gap = BASE + 13 * SECOND
    assert (
        alice.get(reverse("review-frame", args=["1"]) + f"?t={gap:%Y-%m-%dT%H:%M:%S}Z").status_code
        == 404
    )
