"""The copy/transcode table (exports/media/compat.py) established against real decoders.

Every (codec, container) pair the table lets the engine stream-copy is exported here (once)
and decoded with FFmpeg (PyAV) and, in a test of its own, GStreamer: both must show exactly
the requested frames (and hear the audio). Pairs the table transcodes must come out as
H.264/AAC and decode too.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from exports.media import FORMATS, compat, export, synth
from tests.media_helpers import (
    decode_audio_with_gstreamer,
    decode_with_gstreamer,
    decode_with_pyav,
    frame_steps_ok,
)
from tests.test_media_export import FRAME, T0, make_archive

SMALL = {"width": 160, "height": 120}
START = T0 + timedelta(seconds=1.23)
END = T0 + timedelta(seconds=7.61)
FIRST = T0 + timedelta(seconds=1.2)
LAST = T0 + timedelta(seconds=7.6)

# A source archive per codec under test: (video spec, file suffix).
SOURCES = {
    "h264": (synth.SegmentSpec(**SMALL), ".mp4"),
    "h264_bframes": (synth.SegmentSpec(bframes=2, **SMALL), ".mp4"),
    "hevc": (synth.SegmentSpec(vcodec="hevc", acodec=None, **SMALL), ".mkv"),
    "hevc_bframes": (synth.SegmentSpec(vcodec="hevc", bframes=2, **SMALL), ".mp4"),
    "mjpeg": (synth.SegmentSpec(vcodec="mjpeg", acodec=None, **SMALL), ".avi"),
    "pcm_s16le": (synth.SegmentSpec(acodec="pcm_s16le", **SMALL), ".mkv"),
    "pcm_mulaw": (synth.SegmentSpec(acodec="pcm_mulaw", sample_rate=8000, **SMALL), ".avi"),
    "pcm_alaw": (synth.SegmentSpec(acodec="pcm_alaw", sample_rate=8000, **SMALL), ".avi"),
}


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    return {name: make_archive(root / name, spec, suffix=s) for name, (spec, s) in SOURCES.items()}


def codec_of(source: str) -> str:
    return source.removesuffix("_bframes")


def is_audio(codec: str) -> bool:
    return codec.startswith("pcm") or codec == "aac"


@pytest.fixture(scope="module")
def exported(archives, tmp_path_factory):
    """(source, fmt) -> (output, result): each pair exported once, for FFmpeg and GStreamer."""
    root = tmp_path_factory.mktemp("compat-out")
    done = {}

    def get(source, fmt):
        if (source, fmt) not in done:
            out = root / f"{source}.{fmt}"
            done[source, fmt] = out, export(archives[source], START, END, fmt, out)
        return done[source, fmt]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("source", list(SOURCES))
def test_ffmpeg_shows_the_exact_frames(exported, source, fmt):
    out, result = exported(source, fmt)
    codec = codec_of(source)
    copied = compat.can_copy(codec, fmt)
    text = " ".join(result.transcoded)
    if is_audio(codec):
        assert (f"audio: {codec}" not in text) == copied
    elif copied and not (fmt in compat.NO_REORDER and source.endswith("_bframes")):
        assert f"video: {codec}" not in text
    else:
        assert f"video: {codec} -> h264" in text

    walls = decode_with_pyav(out).walls
    assert walls[0] == FIRST and walls[-1] == LAST
    assert frame_steps_ok(walls, FRAME) == []


# Split from the FFmpeg half so that half runs where GStreamer (or one of its plugins) is
# missing; decode_with_gstreamer skips, naming the missing elements.
@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("source", list(SOURCES))
def test_gstreamer_shows_the_same_exact_frames(exported, tmp_path, source, fmt):
    out, result = exported(source, fmt)
    walls = decode_with_gstreamer(out, 160, 120, tmp_path)
    assert walls[0] == FIRST and walls[-1] == LAST
    assert frame_steps_ok(walls, FRAME) == []

    if SOURCES[source][0].acodec:
        samples = decode_audio_with_gstreamer(out, tmp_path)
        beeps = synth.beep_onsets(samples, 16000)
        assert len(beeps) >= 5  # 1.23 .. 7.61 s holds beeps at 2, 3, 4, 5, 6 and 7 s
        assert abs(len(samples) / 16000 - result.duration_s) < 0.3
