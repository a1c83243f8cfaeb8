"""Turn recorded mp4/mov segments into mp4writer Tracks, by demuxing with PyAV (no decoding).

For the writer's tests and the benchmark: segments are played back to back (each one's
timestamps rebased to follow the previous segment's video end), as the executor does with a
plan; samples are referenced where they lie in their file (packet.pos / packet.size).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from exports.media.mp4writer import SampleEntry, Track

HEVC_PARAMETER_SETS = {32, 33, 34}


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
    """The packets of the first `media` stream of `path`, without decoding."""
    with av.open(str(path)) as container:
        streams = getattr(container.streams, media)
        if not streams:
            return None
        stream = streams[0]
        rows, in_band = [], False
        for packet in container.demux(stream):
            if packet.size == 0 or packet.dts is None:
                continue
            rows.append(
                (
                    packet.pts,
                    packet.dts,
                    packet.duration or 0,
                    packet.pos,
                    packet.size,
                    packet.is_keyframe,
                )
            )
            if stream.codec_context.name == "hevc" and not in_band:
                in_band = _has_parameter_sets(bytes(packet))
        entry = _entry(stream, in_band)
        table = np.array(rows, dtype=np.int64)
    return Demuxed(entry, stream.time_base, *table.T[:5], table[:, 5].astype(bool))


def _has_parameter_sets(data: bytes) -> bool:
    position = 0
    while position + 5 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        if (data[position + 4] >> 1) & 0x3F in HEVC_PARAMETER_SETS:
            return True
        position += 4 + length
    return False


def _entry(stream, hevc_in_band: bool) -> SampleEntry:
    ctx = stream.codec_context
    if stream.type == "video":
        color = (
            int(ctx.color_range),
            int(ctx.color_primaries),
            int(ctx.color_trc),
            int(ctx.colorspace),
        )
        return SampleEntry(
            ctx.name,
            bytes(ctx.extradata or b""),
            ctx.width,
            ctx.height,
            color=color,
            hevc_in_band=hevc_in_band,
        )
    return SampleEntry(
        ctx.name, bytes(ctx.extradata or b""), sample_rate=ctx.sample_rate, channels=ctx.channels
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
