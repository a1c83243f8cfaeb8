"""Read what the index needs from a recorded segment without decoding it.

MP4/MOV and AVI carry the video track's duration in their header, so a header read is enough.
MPEG-TS has no duration at all and Matroska's is missing while a file is being written (and,
when present, spans all tracks, not the video alone), so for those the end of the last video
frame comes from packet timestamps: seek to the tail and demux the last few seconds (no
decode). If the demuxer cannot seek, every packet is read once; `ProbeResult.method` and
`packets_read` tell which happened, so the cost is visible.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import av

HEADER_DURATION_FORMATS = ("mov", "mp4", "avi")
TAIL_WINDOW_SECONDS = 4  # B-frame reordering spans far less; the window is what we demux


class ProbeError(Exception):
    """The file is not a readable video segment."""


class IncompleteFile(ProbeError):
    """A plain MP4/MOV whose index (moov box) is not written yet: try again once it is."""


@dataclass(frozen=True)
class ProbeResult:
    duration: float  # seconds from the first video frame to the end of the last one
    video_codec: str
    width: int
    height: int
    frame_rate: float
    audio_codec: str  # "" without audio
    creation_time: datetime | None
    method: str  # "header" | "tail" (seek + demux the tail) | "demux" (every packet)
    packets_read: int


def probe(path: str | os.PathLike) -> ProbeResult:
    """Probe one segment: codecs, size, frame rate, creation_time and video duration."""
    path = Path(path)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return _probe_open(container, path)
    except (av.FFmpegError, ProbeError) as error:
        if _is_mp4_without_complete_moov(path):
            raise IncompleteFile(f"{path.name}: MP4 index (moov) not written yet") from error
        if isinstance(error, ProbeError):
            raise
        raise ProbeError(f"{path.name}: {error}") from error


def _probe_open(container, path: Path) -> ProbeResult:
    if not container.streams.video:
        raise ProbeError(f"{path.name}: no video stream")
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    rate = video.average_rate or video.guessed_rate or video.base_rate
    duration, method, packets = _video_duration(container, video, path)
    if duration <= 0:
        raise ProbeError(f"{path.name}: no video frames")
    return ProbeResult(
        duration=duration,
        video_codec=video.codec_context.name,
        width=video.codec_context.width,
        height=video.codec_context.height,
        frame_rate=float(rate) if rate else 0.0,
        audio_codec=audio.codec_context.name if audio is not None else "",
        creation_time=_creation_time(container, video),
        method=method,
        packets_read=packets,
    )


def _video_duration(container, video, path: Path) -> tuple[float, str, int]:
    format_names = container.format.name.split(",")
    header_format = any(name in HEADER_DURATION_FORMATS for name in format_names)
    # A fragmented MP4's header describes no samples: its timing lives in the fragments.
    if video.duration and header_format and not _top_level_boxes(path, stop_at=b"moof")[1]:
        return float(video.duration * video.time_base), "header", 0
    first, head_packets = video.start_time, 0
    if first is None:  # the demuxer did not find it while opening: read the first packets
        first, head_packets = _first_pts(container, video)
    try:
        end, packets = _tail_end(container, video)
        method = "tail"
    except (av.FFmpegError, _NoTail):
        end, packets, first_seen = _demux_end(container, video)
        first = first if first is not None else first_seen
        method = "demux"
    packets += head_packets
    if first is None or end is None:
        return 0.0, method, packets
    return float((end - first) * video.time_base), method, packets


def _first_pts(container, video, look_ahead: int = 16) -> tuple[int | None, int]:
    """The smallest pts among the first packets (B-frames put it after the first one)."""
    first, count = None, 0
    for packet in container.demux(video):
        if packet.pts is None:
            continue
        count += 1
        first = packet.pts if first is None or packet.pts < first else first
        if count >= look_ahead:
            break
    return first, count


class _NoTail(Exception):
    pass


def _tail_end(container, video) -> tuple[int, int]:
    """End timestamp of the last video frame, demuxing only the file's last seconds."""
    # Seeking far past the end lands on the last keyframe; a second seek a few seconds
    # earlier covers frames reordered after it (B-frames).
    far = (video.start_time or 0) + int(86400 * 7 / video.time_base)
    container.seek(far, stream=video, backward=True, any_frame=False)
    last = _max_end(container.demux(video))[0]
    if last is None:
        raise _NoTail
    window = int(TAIL_WINDOW_SECONDS / video.time_base)
    container.seek(max(last - window, 0), stream=video, backward=True, any_frame=False)
    end, packets, _ = _max_end(container.demux(video))
    if end is None or end < last:
        raise _NoTail
    return end, packets


def _demux_end(container, video) -> tuple[int | None, int, int | None]:
    container.seek(0, stream=video, backward=True, any_frame=False)
    return _max_end(container.demux(video))


def _max_end(packets) -> tuple[int | None, int, int | None]:
    """(max pts + duration, packets read, min pts) over video packets."""
    end = first = None
    count = 0
    frame = 0
    for packet in packets:
        if packet.pts is None:
            continue
        count += 1
        frame = packet.duration or frame
        packet_end = packet.pts + frame
        end = packet_end if end is None or packet_end > end else end
        first = packet.pts if first is None or packet.pts < first else first
    return end, count, first


def _creation_time(container, video) -> datetime | None:
    for metadata in (container.metadata, video.metadata):
        value = metadata.get("creation_time") or metadata.get("CREATION_TIME")
        if value:
            parsed = _parse_tag_time(value)
            # Muxers write 1970/1904 when the recorder left the field unset.
            if parsed is not None and parsed.year > 1990:
                return parsed
    return None


def _parse_tag_time(value: str) -> datetime | None:
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _is_mp4_without_complete_moov(path: Path) -> bool:
    """True for an ISO-BMFF file whose moov box is missing or cut short (still being written)."""
    boxes, _ = _top_level_boxes(path, stop_at=b"moov")
    if not boxes or boxes[0][0] != b"ftyp":
        return False
    last_type, last_end = boxes[-1]
    return last_type != b"moov" or last_end > path.stat().st_size


def _top_level_boxes(path: Path, stop_at: bytes) -> tuple[list[tuple[bytes, int]], bool]:
    """ISO-BMFF top-level (type, end offset) up to the first `stop_at` box; True if found.

    Reads only box headers, so it costs a few small reads per file.
    """
    boxes = []
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            position = 0
            while position + 8 <= size:
                handle.seek(position)
                box_size, box_type = struct.unpack(">I4s", handle.read(8))
                if box_size == 1:
                    box_size = struct.unpack(">Q", handle.read(8))[0]
                elif box_size == 0:
                    box_size = size - position
                if box_size < 8:
                    break
                boxes.append((box_type, position + box_size))
                if box_type == stop_at:
                    return boxes, True
                position += box_size
    except (OSError, struct.error):
        pass
    return boxes, False
