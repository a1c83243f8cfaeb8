"""Turn recorded mp4/mov segments into mp4writer Tracks from their frame indexes.

For the writer's tests and the benchmark: segments are played back to back (each one's
timestamps rebased to follow the previous segment's video end), as the executor does with a
plan; samples are referenced where they lie in their file (the index's pos / size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from exports.media import frameindex, nal
from exports.media.frameindex import Kind, StreamIndex
from exports.media.mp4writer import SampleEntry, Track

HEVC_PARAMETER_SETS = {32, 33, 34}
SYNC_KINDS = (Kind.IDR, Kind.OPEN)


@dataclass
class Demuxed:
    """One stream of one file: its sample entry and per-packet arrays (stream time base)."""

    entry: SampleEntry
    time_base: Fraction
    pts: np.ndarray
    dts: np.ndarray
    duration: np.ndarray
    pos: np.ndarray
    size: np.ndarray
    key: np.ndarray


def demux(path: Path, media: str) -> Demuxed | None:
    """The packets of the `media` stream of `path`, from its frame index (no decoding)."""
    stream = getattr(frameindex.build_index(Path(path)), media)
    if stream is None:
        return None
    key = np.isin(stream.kind, SYNC_KINDS)
    return Demuxed(
        _entry(stream, _in_band(path, stream, key)),
        stream.info.time_base,
        stream.pts,
        stream.dts,
        stream.duration,
        stream.pos,
        stream.size,
        key,
    )


def _in_band(path: Path, stream: StreamIndex, key: np.ndarray) -> bool:
    """Whether the first keyframe of an HEVC stream carries VPS/SPS/PPS itself."""
    if stream.info.codec != "hevc" or not key.any():
        return False
    first = int(np.argmax(key))
    with open(path, "rb") as file:
        data = os.pread(file.fileno(), int(stream.size[first]), int(stream.pos[first]))
    units = nal.nal_units(data, stream.info.nal_length_size)
    return any(nal.hevc_nal_type(unit) in HEVC_PARAMETER_SETS for unit in units)


def _entry(stream: StreamIndex, hevc_in_band: bool) -> SampleEntry:
    info = stream.info
    if info.media == "video":
        color = (info.color_range, info.color_primaries, info.color_trc, info.colorspace)
        return SampleEntry(
            info.codec,
            info.extradata,
            info.width,
            info.height,
            color=color,
            hevc_in_band=hevc_in_band,
        )
    return SampleEntry(
        info.codec, info.extradata, sample_rate=info.sample_rate, channels=info.channels
    )


def concatenated(paths: list[Path], with_audio: bool = True) -> tuple[list[Track], list[Path]]:
    """Video (and audio) tracks playing `paths` back to back; stsd entries shared when equal."""
    videos = [demux(p, "video") for p in paths]
    audios = [demux(p, "audio") for p in paths] if with_audio else []
    tracks = [_join(videos, videos, "video")]
    if audios and all(a is not None for a in audios):
        tracks.append(_join(audios, videos, "audio"))
    return tracks, list(paths)


def _join(parts: list[Demuxed], videos: list[Demuxed], media: str) -> Track:
    timescale = parts[0].time_base.denominator
    entries: list[SampleEntry] = []
    pieces = []
    offset_s = Fraction(0)
    end = None
    for source, (part, video) in enumerate(zip(parts, videos, strict=True)):
        shift = round(offset_s * timescale)
        pts, dts = part.pts + shift, part.dts + shift
        keep = np.ones(len(pts), bool) if end is None else pts >= end  # drop re-sent priming
        if part.entry not in entries:
            entries.append(part.entry)
        index = entries.index(part.entry)
        duration = part.duration.copy()
        if media == "video":
            duration[duration == 0] = np.median(np.diff(np.sort(part.pts)))
        pieces.append(
            (
                dts[keep],
                (pts - dts)[keep],
                duration[keep],
                part.key[keep],
                part.size[keep],
                np.full(keep.sum(), source),
                part.pos[keep],
                np.full(keep.sum(), index),
            )
        )
        end = int((pts + duration)[keep].max())
        vend = video.pts + video.duration
        offset_s += Fraction(int(vend.max() - video.pts.min())) * video.time_base
    columns = [np.concatenate(c) for c in zip(*pieces, strict=True)]
    dts, cts, duration, sync, size, source, pos, entry = columns
    if media == "video":
        # As the planner does: dts_i = i-th smallest pts - delay, one delay for the file, so
        # joins of segments with different reorder depths stay strictly increasing.
        pts = dts + cts
        ordered = np.sort(pts)
        delay = max(0, int((ordered - pts).max()))
        dts = ordered - delay
        cts = pts - dts
    return Track(
        media,
        timescale,
        entries,
        dts.astype(np.int64),
        cts.astype(np.int32),
        duration.astype(np.int32),
        sync.astype(bool),
        size.astype(np.int32),
        source.astype(np.int32),
        pos.astype(np.int64),
        entry.astype(np.uint8),
        presentation_start=0,
    )
