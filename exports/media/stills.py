"""A still image of one instant (`Format: "jpg"` or `"png"`): the frame on screen at `From`.

The frame is chosen by the planner with the rule every export uses for its first frame (the
frame on screen at the start of a one-millisecond range), decoded from its access point at
full resolution and written as JPEG (FFmpeg's mjpeg encoder, quality 2) or PNG. The camera
and the recorded time go into the image's own metadata, written here byte by byte:

- JPEG: an Exif APP1 segment right after SOI (CIPA DC-008 / Exif 2.32): IFD0 ImageDescription
  and DateTime; Exif IFD ExifVersion, DateTimeOriginal (the camera's local time),
  OffsetTimeOriginal (its UTC offset) and SubSecTimeOriginal (milliseconds).
- PNG: text chunks (PNG 1.2 section 11.3.4) Title, Source, Description and Creation Time
  (ISO 8601 UTC, milliseconds); iTXt instead of tEXt when a value is not Latin-1.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import av

from .errors import ExportError
from .executor import DEMUX_OPTIONS
from .plan import PlanSegment

FORMATS = ("jpg", "png")
JPEG_QSCALE = 2  # FFmpeg's -q:v 2: visually lossless, about 1/5 the size of PNG at 1080p


@dataclass(frozen=True)
class StillMetadata:
    camera_id: str
    camera_name: str
    wall: datetime  # aware: when the frame was recorded
    zone: str | None = None  # the camera's IANA zone; None: UTC

    @property
    def description(self) -> str:
        return f"camera {self.camera_id} ({self.camera_name}), recorded {iso_millis(self.wall)}"


def iso_millis(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def decode_frame(segment: PlanSegment, packet: int, decode_from: int) -> av.VideoFrame:
    """The picture of video packet `packet`, decoding from packet `decode_from` on."""
    index = segment.index.video
    wanted_pts = int(index.pts[packet])
    try:
        source = av.open(str(segment.path), options=DEMUX_OPTIONS)
    except (av.error.FFmpegError, OSError) as error:
        raise ExportError(f"{segment.path.name} can no longer be read ({error})") from error
    with source:
        stream = source.streams.video[0]
        decoder = av.CodecContext.create(stream.codec_context.name, "r")
        if stream.codec_context.extradata:
            decoder.extradata = stream.codec_context.extradata
        number = -1
        for item in source.demux(stream):
            if item.size == 0:
                continue
            number += 1
            if number < decode_from:
                continue
            # The index's (unwrapped) times, so the wanted picture is found by its pts.
            item.pts, item.dts = int(index.pts[number]), int(index.dts[number])
            for frame in _decode(decoder, item):
                if frame.pts == wanted_pts:
                    return frame
            if number >= packet:
                break
        for frame in _decode(decoder, None):
            if frame.pts == wanted_pts:
                return frame
    raise ExportError(f"{segment.path.name}: the frame at packet {packet} could not be decoded")


def _decode(decoder, packet):
    try:
        return decoder.decode(packet)
    except av.error.FFmpegError:
        return []


def write_still(frame: av.VideoFrame, fmt: str, path: Path, meta: StillMetadata) -> None:
    """Encode `frame` at full resolution as `fmt` with `meta` inside, to `path`."""
    if fmt == "jpg":
        data = _exif_inserted(_encode(frame, "mjpeg", "yuvj420p"), meta)
    elif fmt == "png":
        data = _text_inserted(_encode(frame, "png", "rgb24"), meta)
    else:
        raise ExportError(f"unknown still format {fmt!r}; expected one of {', '.join(FORMATS)}")
    Path(path).write_bytes(data)


def _encode(frame: av.VideoFrame, codec: str, pix_fmt: str) -> bytes:
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = frame.width, frame.height, pix_fmt
    ctx.time_base = frame.time_base or 1
    if codec == "mjpeg":
        ctx.qscale = True
        ctx.global_quality = JPEG_QSCALE * 118  # FF_QP2LAMBDA
        ctx.qmin = ctx.qmax = JPEG_QSCALE
    picture = frame.reformat(format=pix_fmt)
    picture.pts = 0
    packets = ctx.encode(picture) + ctx.encode(None)
    if len(packets) != 1:
        raise ExportError(f"the {codec} encoder returned {len(packets)} pictures for one frame")
    return bytes(packets[0])


# -- JPEG: Exif ----------------------------------------------------------------------------------

_ASCII, _LONG, _UNDEFINED = 2, 4, 7


def _exif_inserted(jpeg: bytes, meta: StillMetadata) -> bytes:
    if jpeg[:2] != b"\xff\xd8":
        raise ExportError("the JPEG encoder did not start its picture with SOI")
    payload = b"Exif\0\0" + _tiff(meta)
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def _tiff(meta: StillMetadata) -> bytes:
    local = meta.wall.astimezone(ZoneInfo(meta.zone) if meta.zone else UTC)
    stamp = local.strftime("%Y:%m:%d %H:%M:%S").encode()
    offset = local.strftime("%z")
    offset = (offset[:3] + ":" + offset[3:]).encode()
    millis = f"{local.microsecond // 1000:03d}".encode()

    def ifd0(exif_at: int) -> bytes:
        return _ifd(
            [
                (0x010E, _ASCII, meta.description.encode("utf-8") + b"\0"),
                (0x0132, _ASCII, stamp + b"\0"),
                (0x8769, _LONG, struct.pack("<I", exif_at)),
            ],
            8,
        )

    exif_at = 8 + len(ifd0(0))
    exif = _ifd(
        [
            (0x9000, _UNDEFINED, b"0232"),
            (0x9003, _ASCII, stamp + b"\0"),
            (0x9011, _ASCII, offset + b"\0"),
            (0x9291, _ASCII, millis + b"\0"),
        ],
        exif_at,
    )
    return b"II*\0" + struct.pack("<I", 8) + ifd0(exif_at) + exif


def _ifd(entries: list[tuple[int, int, bytes]], at: int) -> bytes:
    """One little-endian TIFF IFD at file offset `at`, values over 4 bytes stored after it."""
    data_at = at + 2 + 12 * len(entries) + 4
    head, data = struct.pack("<H", len(entries)), b""
    for tag, kind, value in entries:
        count = len(value) // 4 if kind == _LONG else len(value)
        if len(value) <= 4:
            field = value.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_at + len(data))
            data += value + b"\0" * (len(value) % 2)  # values start on a word boundary
        head += struct.pack("<HHI", tag, kind, count) + field
    return head + struct.pack("<I", 0) + data


# -- PNG: text chunks ----------------------------------------------------------------------------


def _text_inserted(png: bytes, meta: StillMetadata) -> bytes:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ExportError("the PNG encoder did not start its picture with IHDR")
    ihdr_end = 8 + 12 + struct.unpack(">I", png[8:12])[0]
    texts = [
        ("Title", meta.camera_name),
        ("Source", f"camera {meta.camera_id}"),
        ("Description", meta.description),
        ("Creation Time", iso_millis(meta.wall)),
    ]
    chunks = b"".join(_text_chunk(key, value) for key, value in texts)
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def _text_chunk(keyword: str, value: str) -> bytes:
    try:
        kind, body = b"tEXt", keyword.encode("latin-1") + b"\0" + value.encode("latin-1")
    except UnicodeEncodeError:
        # iTXt: keyword, no compression, empty language tag and translated keyword, UTF-8.
        kind, body = b"iTXt", keyword.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
