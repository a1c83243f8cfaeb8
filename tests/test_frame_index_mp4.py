"""The MP4/MOV frame index read from the moov box equals the one built by demuxing with PyAV,
byte for byte, on every stream a recorder sends; files it cannot read so fall back to PyAV."""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from exports.media import frameindex, mp4index, nal, synth
from exports.media.frameindex import Kind, build_index, build_mp4_index
from exports.media.framekind import HEAD_BYTES, classify_nal_units, head_kinds

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
SMALL = {"width": 160, "height": 120}


def segment(folder: Path, name: str, spec: synth.SegmentSpec, seconds=2.0) -> Path:
    path = folder / name
    synth.write_segment(path, T0, seconds, spec)
    return path


def fast_and_demuxed(path: Path):
    """Both indexes of `path`: from the sample tables (must be possible) and by demuxing."""
    fast = build_mp4_index(path, os.stat(path))
    demuxed = build_index(path, method="demux")
    assert fast.to_bytes() == demuxed.to_bytes()
    assert build_index(path).to_bytes() == fast.to_bytes()
    return fast, demuxed


def falls_back(path: Path, reason: str):
    """The sample tables are refused for `reason`, and build_index gives the demuxed index."""
    with pytest.raises(mp4index.Unsupported, match=reason):
        build_mp4_index(path, os.stat(path))
    demuxed = build_index(path, method="demux")
    assert build_index(path).to_bytes() == demuxed.to_bytes()
    return demuxed


STREAMS = {
    "closed": synth.SegmentSpec(**SMALL),
    "closed-b": synth.SegmentSpec(bframes=2, **SMALL),
    "open-gop": synth.SegmentSpec(bframes=2, gop=24, open_gop=True, **SMALL),
    "intra-refresh": synth.SegmentSpec(intra_refresh=True, **SMALL),
    "hevc-cra": synth.SegmentSpec(vcodec="hevc", gop=24, bframes=3, **SMALL),
    "full-range": synth.SegmentSpec(full_range=True, bframes=2, **SMALL),
    "vfr": synth.SegmentSpec(rate_drops=((0.6, 1.6),), **SMALL),
    "no-audio": synth.SegmentSpec(acodec=None, **SMALL),
    # several slices a frame: each must be intra for an open random access point
    "slices": synth.SegmentSpec(
        bframes=2, gop=24, open_gop=True, x264_extra={"slices": 3}, **SMALL
    ),
    "slices-refresh": synth.SegmentSpec(intra_refresh=True, x264_extra={"slices": 2}, **SMALL),
}


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
@pytest.mark.parametrize("name", list(STREAMS))
def test_sample_tables_give_the_demuxed_index(tmp_path, name, suffix):
    path = segment(tmp_path, name + suffix, STREAMS[name], seconds=3.0)
    fast, _ = fast_and_demuxed(path)
    assert len(fast.video) > 0 and not fast.damaged
    assert (fast.audio is None) == (STREAMS[name].acodec is None)


def test_the_streams_have_the_kinds_and_edits_they_are_meant_to(tmp_path):
    """The comparison above covers what it should: leading pictures, recovery points, RASL,
    an edit list (B-frame delay: negative first dts), VFR, full range."""
    found = {}
    for name in ("open-gop", "intra-refresh", "hevc-cra", "full-range", "vfr", "closed-b"):
        found[name] = build_index(segment(tmp_path, name + ".mp4", STREAMS[name], 3.0))
    assert Kind.OPEN in found["open-gop"].video.kind
    assert Kind.LEADING in found["open-gop"].video.kind
    assert Kind.RECOVERY in found["intra-refresh"].video.kind
    assert Kind.LEADING in found["hevc-cra"].video.kind
    assert found["full-range"].video.info.pix_fmt == "yuvj420p"
    assert found["full-range"].video.info.color_range == 2
    assert len(set(np.diff(np.sort(found["vfr"].video.pts)).tolist())) == 2
    assert found["closed-b"].video.dts[0] < 0 and found["closed-b"].audio.dts[0] < 0


@pytest.mark.parametrize("name", ["slices", "hevc-cra", "closed-b"])
def test_sample_heads_are_the_first_bytes_of_each_nal_unit(tmp_path, name):
    """What the classifiers get from the few bytes read: every NAL unit they look at, in order,
    each the start of (SEI: all of) the unit demuxing gives."""
    path = segment(tmp_path, name + ".mp4", STREAMS[name])
    video = build_index(path).video
    length, codec = video.info.nal_length_size, video.info.codec
    data = path.read_bytes()
    slices = 0
    with open(path, "rb") as file:
        for pos, size in zip(video.pos.tolist(), video.size.tolist(), strict=True):
            whole = [bytes(u) for u in nal.nal_units(data[pos : pos + size], length)]
            heads = frameindex._sample_nal_units(file.fileno(), pos, size, length, codec)
            assert 0 < len(heads) <= len(whole)
            for head, unit in zip(heads, whole, strict=False):
                assert unit.startswith(head) and len(head) >= min(len(unit), 24)
            if codec == "h264" and nal.h264_nal_type(heads[-1]) != nal.H264_IDR:
                assert len(heads) == len(whole)
            if codec == "h264":
                slices = max(slices, sum(nal.h264_nal_type(u) in (1, 5) for u in whole))
    assert slices > 1 or codec == "hevc"  # several slices a frame: all of them are read


H264_TYPES = (1, 1, 1, 5, 6, 7, 8, 9, 12, 0, 2)
HEVC_TYPES = (0, 1, 8, 9, 6, 19, 20, 21, 16, 32, 33, 34, 35, 39, 40)


def random_sample(rng, codec: str, length_size: int) -> bytes:
    """A few NAL units of random types, sizes (some empty or longer than the sample) and
    header bytes: what real streams and damaged ones may hold."""
    units = []
    for _ in range(int(rng.integers(1, 5))):
        nal_type = int(rng.choice(H264_TYPES if codec == "h264" else HEVC_TYPES))
        size = int(rng.choice([0, 1, 2, 3, 20, 60, 200]))
        body = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        first = (0x60 | nal_type) if codec == "h264" else nal_type << 1
        unit = bytes([first]) + body if size else b""
        declared = len(unit) + (int(rng.integers(1, 300)) if rng.random() < 0.05 else 0)
        if declared >= 1 << (8 * length_size):
            declared = len(unit)
        units.append(declared.to_bytes(length_size, "big") + unit)
    return b"".join(units)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_kinds_read_at_once_equal_those_read_one_by_one(tmp_path, codec, length_size):
    """The numpy walk over each sample's first bytes settles most samples and gives, for
    every sample, the kind and recovery count the per-frame classifier gives."""
    rng = np.random.default_rng(length_size)
    samples = [random_sample(rng, codec, length_size) for _ in range(3000)]
    path = tmp_path / "samples.bin"
    path.write_bytes(b"".join(samples))
    sizes = np.array([len(s) for s in samples], dtype=np.int64)
    track = SimpleNamespace(
        codec=codec,
        pos=np.concatenate(([0], np.cumsum(sizes)[:-1])),
        size=sizes,
        key=rng.random(len(samples)) < 0.3,
    )
    kind = np.zeros(len(samples), np.uint8)
    recovery = np.zeros(len(samples), np.int16)
    with open(path, "rb") as file:
        fd = file.fileno()
        frameindex._sample_kinds(fd, track, length_size, kind, recovery)
        for row, (pos, size) in enumerate(zip(track.pos.tolist(), sizes.tolist(), strict=True)):
            units = frameindex._sample_nal_units(fd, pos, size, length_size, codec)
            expected = classify_nal_units(codec, units, bool(track.key[row]))
            assert (kind[row], recovery[row]) == expected, (row, samples[row].hex())
    heads = np.frombuffer(
        b"".join(s[:HEAD_BYTES].ljust(HEAD_BYTES, b"\0") for s in samples), np.uint8
    ).reshape(-1, HEAD_BYTES)
    readable = np.minimum(sizes, HEAD_BYTES)
    _, undecided = head_kinds(codec, heads, readable, sizes, length_size)
    assert np.count_nonzero(~undecided) > len(samples) // 4
    assert len(set(kind[~undecided].tolist())) >= 3


def test_a_ten_second_long_gop_segment(tmp_path):
    path = segment(tmp_path, "long.mp4", synth.SegmentSpec(gop=250, bframes=2, **SMALL), 10.0)
    fast, _ = fast_and_demuxed(path)
    assert np.count_nonzero(fast.video.kind == Kind.IDR) == 1


def test_truncated_mp4_with_index_in_front_is_damaged_like_the_demuxer_says(tmp_path):
    source = segment(tmp_path, "s.mp4", synth.SegmentSpec(bframes=2, **SMALL))
    path = tmp_path / "fast.mp4"
    remux(source, path, {"movflags": "faststart"})
    whole, _ = fast_and_demuxed(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    cut, demuxed = fast_and_demuxed(path)
    assert cut.damaged == demuxed.damaged and "file ends inside" in cut.damaged
    assert 0 < len(cut.video) < len(whole.video)


def test_64_bit_chunk_offsets(tmp_path):
    path = segment(tmp_path, "s.mp4", synth.SegmentSpec(bframes=2, **SMALL))
    wide = tmp_path / "co64.mp4"
    wide.write_bytes(with_co64(path.read_bytes()))
    assert b"co64" in wide.read_bytes() and b"stco" not in wide.read_bytes()
    fast, _ = fast_and_demuxed(wide)
    assert fast.to_bytes()[:0] == b""  # equal to the demuxer's, checked above
    plain = build_index(path)
    assert np.array_equal(fast.video.pos, plain.video.pos)


@pytest.mark.parametrize(("last", "jump_at"), [(1024, None), (700, None), (512, 5)])
def test_irregular_sample_durations(tmp_path, last, jump_at):
    """A longer or odd last frame, a jump in the middle: several stts entries, whose average
    rate FFmpeg takes over all of them."""
    source = segment(tmp_path, "s.mp4", synth.SegmentSpec(acodec=None, **SMALL))
    path = tmp_path / "odd.mp4"
    with av.open(str(source)) as inp, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        packets = [packet for packet in inp.demux(inp.streams.video[0]) if packet.size]
        for number, packet in enumerate(packets):
            if number == len(packets) - 1:
                packet.duration = last
            if jump_at is not None and number >= jump_at:
                packet.pts += 100
                packet.dts += 100
            packet.stream = stream
            out.mux(packet)
    fast, _ = fast_and_demuxed(path)
    assert fast.video.info.frame_rate != 25


# -- what is left to the demuxer ---------------------------------------------------------------


def test_mjpeg_and_pcm_in_mov_fall_back_to_demuxing(tmp_path):
    mjpeg = segment(tmp_path, "m.mov", synth.SegmentSpec(vcodec="mjpeg", acodec=None, **SMALL))
    assert len(falls_back(mjpeg, "MJPEG").video) == 50
    pcm = segment(tmp_path, "p.mov", synth.SegmentSpec(acodec="pcm_s16le", **SMALL))
    assert len(falls_back(pcm, "audio sample entry").audio) > 0


def test_fragmented_mp4_falls_back(tmp_path):
    source = segment(tmp_path, "s.mp4", synth.SegmentSpec(**SMALL))
    path = tmp_path / "frag.mp4"
    remux(source, path, {"movflags": "frag_keyframe+empty_moov"})
    assert len(falls_back(path, "fragmented").video) == 50


def test_edit_list_with_an_empty_edit_falls_back(tmp_path):
    """A track starting later than the movie gets an empty edit first (media_time -1)."""
    source = segment(tmp_path, "s.mp4", synth.SegmentSpec(acodec=None, **SMALL))
    path = tmp_path / "late.mp4"
    with av.open(str(source)) as inp, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.pts += 12800
                packet.dts += 12800
                packet.stream = stream
                out.mux(packet)
    assert len(falls_back(path, "edit list").video) == 50


def test_two_video_tracks_fall_back(tmp_path):
    source = segment(tmp_path, "s.mp4", synth.SegmentSpec(acodec=None, **SMALL))
    path = tmp_path / "two.mp4"
    with av.open(str(source)) as inp, av.open(str(path), "w") as out:
        template = inp.streams.video[0]
        outs = [out.add_stream_from_template(template) for _ in range(2)]
        for packet in inp.demux(template):
            if packet.size:
                for stream in outs:
                    copy = av.Packet(bytes(packet))
                    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
                    copy.is_keyframe, copy.stream = packet.is_keyframe, stream
                    out.mux(copy)
    falls_back(path, "more than one video track")


def test_files_without_a_moov_fall_back(tmp_path):
    source = segment(tmp_path, "s.mp4", synth.SegmentSpec(**SMALL))
    cut = tmp_path / "cut.mp4"  # moov at the end, cut off
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    assert falls_back(cut, "moov").damaged
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a recording\n" * 200)
    assert falls_back(junk, "not an MP4").damaged


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])
def test_other_containers_are_demuxed(tmp_path, suffix):
    path = segment(tmp_path, "s" + suffix, synth.SegmentSpec(**SMALL))
    falls_back(path, "not an MP4")


def test_unknown_method_is_refused(tmp_path):
    path = segment(tmp_path, "s.mp4", synth.SegmentSpec(acodec=None, **SMALL))
    with pytest.raises(ValueError, match="method"):
        build_index(path, method="guess")


# -- helpers -----------------------------------------------------------------------------------


def remux(source: Path, target: Path, options: dict) -> None:
    with av.open(str(source)) as inp, av.open(str(target), "w", options=options) as out:
        streams = [inp.streams.video[0], *inp.streams.audio[:1]]
        outs = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(streams):
            if packet.size:
                packet.stream = outs[packet.stream.index]
                out.mux(packet)


CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def with_co64(data: bytes) -> bytes:
    """The file with every stco turned into a co64 (same offsets). The mp4 muxer writes moov
    after mdat, so growing moov moves no sample."""
    assert data.index(b"mdat") < data.index(b"moov")
    return _rewrite(data)


def _rewrite(data: bytes) -> bytes:
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + size]
        if kind in CONTAINER_BOXES:
            body = _rewrite(body)
        elif kind == b"stco":
            count = struct.unpack_from(">I", body, 4)[0]
            offsets = np.frombuffer(body, ">u4", count, 8).astype(">u8")
            kind, body = b"co64", body[:8] + offsets.tobytes()
        out.append(struct.pack(">I4s", 8 + len(body), kind) + body)
        pos += size
    return b"".join(out)


def test_rate_is_the_stts_rate_fraction():
    assert mp4index._average_rate(np.array([[10, 512]]), 12800) == Fraction(25)
    assert mp4index._average_rate(np.array([[49, 512], [1, 1024]]), 12800) == Fraction(1250, 51)
