"""Export options decoded back: stills (frame and metadata), overlay (the drawn time read back
from every frame against its bar code), timelapse (which frames were kept, and when shown)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import pytest

from exports.media import bitmapfont, overlay, synth
from exports.media.errors import NoRecordingError
from exports.media.options import PictureOptions, export_with_options
from tests.media_helpers import beep_offsets, decode_with_pyav, read_overlay_line
from tests.test_media_export import make_archive

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
FRAME = timedelta(milliseconds=40)
WIDTH, HEIGHT = 640, 480  # overlay text at 2 screen pixels per font pixel


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Two 3 s segments, 640×480, 25 fps, a keyframe each second, AAC beeps."""
    spec = synth.SegmentSpec(width=WIDTH, height=HEIGHT)
    return make_archive(tmp_path_factory.mktemp("opt"), spec, count=2)


def _only_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 1
    return frames[0]


def _exif(jpeg: bytes) -> dict[int, bytes]:
    """Tags of IFD0 and the Exif IFD of the APP1 segment right after SOI."""
    assert jpeg[:4] == b"\xff\xd8\xff\xe1"
    length = struct.unpack(">H", jpeg[4:6])[0]
    assert jpeg[6:12] == b"Exif\0\0"
    tiff = jpeg[12 : 4 + length]
    assert tiff[:4] == b"II*\0"

    def ifd(at):
        tags = {}
        for k in range(struct.unpack("<H", tiff[at : at + 2])[0]):
            tag, kind, count, value = struct.unpack("<HHI4s", tiff[at + 2 + 12 * k : at + 14 + 12 * k])
            size = count * (4 if kind == 4 else 1)
            data = value[:size] if size <= 4 else tiff[struct.unpack("<I", value)[0] :][:size]
            tags[tag] = data
        return tags

    tags = ifd(struct.unpack("<I", tiff[4:8])[0])
    tags.update(ifd(struct.unpack("<I", tags[0x8769])[0]))
    return tags


def _png_texts(png: bytes) -> dict[str, str]:
    texts, at = {}, 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        if kind == b"tEXt":
            key, value = png[at + 8 : at + 8 + length].split(b"\0", 1)
            texts[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return texts


# -- stills ------------------------------------------------------------------------------------


def test_jpeg_still_is_the_frame_on_screen_at_from_with_exif_time(archive, tmp_path):
    # 4.23 s: mid-GOP in the second segment, so the frame is decoded from the keyframe at 4.0.
    at = T0 + timedelta(seconds=4.23)
    out = tmp_path / "still.jpg"
    options = PictureOptions("7", "Front door", zone="Europe/Berlin")
    result = export_with_options(archive, at, at + timedelta(seconds=20), "jpg", out, options)
    frame = _only_frame(out)
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    shown = T0 + timedelta(seconds=4.2)  # on screen from 4.20 to 4.24
    assert synth.frame_wall_time(frame.to_ndarray(format="gray")) == shown
    assert result.technique == "still" and result.frames == 1 and result.first_frame == shown
    tags = _exif(out.read_bytes())
    assert tags[0x9003] == b"2026:03:01 09:00:04\0"  # Berlin local time
    assert tags[0x9011] == b"+01:00\0"
    assert tags[0x9291] == b"200\0"
    assert tags[0x010E].rstrip(b"\0").decode() == (
        "camera 7 (Front door), recorded 2026-03-01T08:00:04.200Z"
    )


def test_png_still_carries_camera_and_time_in_text_chunks(archive, tmp_path):
    at = T0 + timedelta(seconds=0.52)  # exactly at a frame's start: that frame
    out = tmp_path / "still.png"
    export_with_options(archive, at, at, "png", out, PictureOptions("7", "Front door"))
    frame = _only_frame(out)
    assert frame.format.name.startswith("rgb")
    assert synth.frame_wall_time(frame.to_ndarray(format="gray")) == at
    texts = _png_texts(out.read_bytes())
    assert texts["Title"] == "Front door"
    assert texts["Source"] == "camera 7"
    assert texts["Creation Time"] == "2026-03-01T08:00:00.520Z"


def test_still_in_a_gap_is_no_recording(tmp_path):
    segments = make_archive(tmp_path, synth.SegmentSpec(acodec=None), count=3, skip=(1,))
    at = T0 + timedelta(seconds=4.5)  # nothing recorded from 3 s to 6 s
    with pytest.raises(NoRecordingError):
        export_with_options(segments, at, at, "jpg", tmp_path / "x.jpg", PictureOptions())
    assert not list(tmp_path.glob("*x.jpg*"))


# -- overlay -----------------------------------------------------------------------------------


def _read_times(path: Path, spec: overlay.OverlaySpec, sample: datetime):
    """(drawn text, bar code time) of every frame; the text's place comes from a sample line."""
    lines = spec.lines(sample)
    top, left, _ = overlay.label_box(spec, lines, WIDTH, HEIGHT)
    scale = overlay.scale_for(WIDTH, HEIGHT)
    pad, line_h = scale, bitmapfont.CELL_HEIGHT * scale
    pairs = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            gray = frame.to_ndarray(format="gray")
            name = read_overlay_line(gray, top + pad, left + pad, scale, len(lines[0]))
            text = read_overlay_line(gray, top + pad + line_h, left + pad, scale, len(lines[1]))
            pairs.append((name, text, synth.frame_wall_time(gray)))
    return pairs


def test_overlay_draws_each_frames_own_time_in_the_camera_zone_to_the_millisecond(archive, tmp_path):
    spec = overlay.OverlaySpec("Front door", "bottom-left", "Europe/Berlin", milliseconds=True)
    start, end = T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=5.1)
    out = tmp_path / "overlay.mp4"
    result = export_with_options(archive, start, end, "mp4", out, PictureOptions(overlay=spec))
    assert result.technique == "overlay_transcode"
    pairs = _read_times(out, spec, T0)
    assert len(pairs) == result.frames == 116  # 0.48 .. 5.08
    berlin = ZoneInfo("Europe/Berlin")
    for name, text, wall in pairs:
        assert name == "FRONT DOOR"
        expected = wall.astimezone(berlin)
        assert text == f"{expected:%Y-%m-%d %H:%M:%S}.{expected.microsecond // 1000:03d} +01:00"
    decoded = decode_with_pyav(out)
    assert decoded.walls[0] == T0 + timedelta(seconds=0.48)
    # Audio is copied, not dropped, and stays in sync: beeps at whole seconds.
    assert decoded.audio_codec == "aac" and result.audio
    offsets = beep_offsets(decoded)
    assert offsets and all(abs(o) < 0.07 for o in offsets)


def test_overlay_in_utc_to_the_second_top_right_in_mkv(archive, tmp_path):
    spec = overlay.OverlaySpec("Yard 2", "top-right", None, milliseconds=False)
    start, end = T0 + timedelta(seconds=2.0), T0 + timedelta(seconds=4.0)
    out = tmp_path / "overlay.mkv"
    result = export_with_options(archive, start, end, "mkv", out, PictureOptions(overlay=spec))
    pairs = _read_times(out, spec, T0)
    assert len(pairs) == result.frames == 50
    # The label covers the bar code's right half up there: frame k was recorded at 2 s + k/25.
    for k, (name, text, _) in enumerate(pairs):
        assert name == "YARD 2"
        assert text == f"{start + k * FRAME:%Y-%m-%d %H:%M:%S} UTC"


# -- timelapse ---------------------------------------------------------------------------------


def test_timelapse_keeps_every_nth_frame_re_encoded_when_not_all_keyframes(archive, tmp_path):
    start, end = T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=6)
    out = tmp_path / "tl.mp4"
    result = export_with_options(archive, start, end, "mp4", out, PictureOptions(speed=3))
    decoded = decode_with_pyav(out)
    first = T0 + timedelta(seconds=0.48)  # on screen at From
    expected = [first + 3 * k * FRAME for k in range(len(decoded.walls))]
    assert decoded.walls == expected
    assert expected[-1] <= T0 + timedelta(seconds=5.96) < expected[-1] + 3 * FRAME
    assert decoded.times == pytest.approx([k * 0.04 for k in range(len(expected))], abs=1e-3)
    assert decoded.audio is None and not result.audio
    assert result.technique == "timelapse_transcode"
    kept = result.options["timelapse"]
    assert kept["kept_frames"] == len(expected) == result.frames
    assert kept["kept"][:2] == ["2026-03-01T08:00:00.480Z", "2026-03-01T08:00:00.600Z"]


def test_timelapse_copies_only_keyframes_when_every_kept_frame_is_one(archive, tmp_path):
    start, end = T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=6)
    out = tmp_path / "tl.mkv"
    result = export_with_options(archive, start, end, "mkv", out, PictureOptions(speed=25))
    decoded = decode_with_pyav(out)
    # The keyframes at 1..5 s; the one at 0 s is before From.
    assert decoded.walls == [T0 + timedelta(seconds=s) for s in range(1, 6)]
    assert decoded.times == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16], abs=1e-3)
    assert result.technique == "timelapse_keyframes"
    assert result.encoded_frames == 0 and result.decoded_frames == 0
    assert result.options["timelapse"]["mode"] == "keyframes"


def test_timelapse_with_overlay_draws_the_kept_frames_times(archive, tmp_path):
    spec = overlay.OverlaySpec("Cam", "bottom-right", None, milliseconds=True)
    start, end = T0, T0 + timedelta(seconds=6)
    out = tmp_path / "tl.mp4"
    result = export_with_options(archive, start, end, "mp4", out, PictureOptions(overlay=spec, speed=25))
    assert result.technique == "timelapse_overlay_transcode"
    pairs = _read_times(out, spec, T0)
    assert [wall for _, _, wall in pairs] == [T0 + timedelta(seconds=s) for s in range(6)]
    for _, text, wall in pairs:
        assert text == f"{wall:%Y-%m-%d %H:%M:%S}.000 UTC"


@pytest.mark.parametrize("vcodec", ["hevc", "mjpeg"])
def test_overlay_reads_back_on_other_codecs(vcodec, tmp_path):
    spec = synth.SegmentSpec(vcodec=vcodec, width=320, height=240, acodec=None)
    segments = make_archive(tmp_path, spec, count=1)
    label = overlay.OverlaySpec("Gate", "bottom-left", None, milliseconds=True)
    out = tmp_path / "overlay.mkv"
    result = export_with_options(
        segments, T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=1.5), "mkv", out,
        PictureOptions(overlay=label),
    )
    assert result.frames == 26
    lines = label.lines(T0)
    top, left, _ = overlay.label_box(label, lines, 320, 240)
    scale = overlay.scale_for(320, 240)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        for frame in container.decode(video=0):
            gray = frame.to_ndarray(format="gray")
            text = read_overlay_line(
                gray, top + scale + bitmapfont.CELL_HEIGHT * scale, left + scale, scale, len(lines[1])
            )
            wall = synth.frame_wall_time(gray)
            assert text == f"{wall:%Y-%m-%d %H:%M:%S}.{wall.microsecond // 1000:03d} UTC"
