"""Pieces of a recorded segment as fragmented MP4 for a browser's Media Source Extensions.

PyAV only, no Django. A segment is cut on its own keyframes into pieces of about
PIECE_SECONDS: piece k runs from the first keyframe at or after k * PIECE_SECONDS (counted from
the segment's first video frame; piece 0 starts at that frame) up to the first keyframe at or
after (k + 1) * PIECE_SECONDS. Pieces never overlap and each starts on a keyframe, so the
player can append them in any order and every one decodes alone.

Two ways to make a piece:
- `copy_piece`: H.264 (and AAC) packets copied as they are - no decoding, almost no CPU.
- `proxy_piece`: for what browsers cannot play (HEVC in Chromium, MJPEG, G.711/PCM audio),
  decoded and encoded again as H.264/AAC at a reduced size, frame for frame with the same
  timestamps, so the page maps media time to wall time the same way for both.

Proxy pieces are shorter (PROXY_PIECE_SECONDS), as they are encoded before they are sent.

Each piece's timestamps start at zero at its first frame; `Piece.start` says where that frame
lies in the segment, so wall time = segment start + piece start + media time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

PIECE_SECONDS = 10
# Proxy pieces are encoded whole before they are sent: short ones start sooner.
PROXY_PIECE_SECONDS = 2
PROXY_MAX_WIDTH = 640
BROWSER_VIDEO = frozenset({"h264"})
BROWSER_AUDIO = frozenset({"aac"})
# Fragment at every keyframe; each fragment's moof is its own base (what MSE parsers expect).
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
PROXY_CODECS = "avc1.64001f, mp4a.40.2"


class PieceError(Exception):
    """The segment cannot be read, or the piece asked for does not exist."""


@dataclass
class Piece:
    data: bytes
    index: int
    start: Fraction  # seconds from the segment's first frame to the piece's first frame
    end: Fraction  # seconds from the segment's first frame to the end of the piece's last frame
    frames: int
    last: bool  # no piece follows in this segment
    codecs: str  # the RFC 6381 codecs string for MediaSource.isTypeSupported/addSourceBuffer
    technique: str  # "copy" or "proxy"


def needs_proxy(video_codec: str, audio_codec: str | None) -> bool:
    """True when a browser cannot play the segment's streams as they are recorded."""
    return video_codec not in BROWSER_VIDEO or bool(
        audio_codec and audio_codec not in BROWSER_AUDIO
    )


def piece_index_at(seconds: float, piece_seconds: float = PIECE_SECONDS) -> int:
    """The grid cell a time (seconds from the segment's first frame) falls in."""
    return max(0, int(seconds // piece_seconds))


def copy_piece(
    path: Path,
    index: int,
    at: float | None = None,
    audio: bool = True,
    piece_seconds: float = PIECE_SECONDS,
) -> Piece:
    """Piece `index` of the segment at `path`, H.264/AAC stream-copied into fragmented MP4.

    With `at` (seconds into the segment), the piece holding that instant is returned instead
    when the frame at `at` precedes piece `index`'s first keyframe (a long GOP).
    """
    return _containing(lambda p, i, a: _copy(p, i, a, piece_seconds), path, index, at, audio)


def proxy_piece(
    path: Path,
    index: int,
    at: float | None = None,
    audio: bool = True,
    max_width: int = PROXY_MAX_WIDTH,
    piece_seconds: float = PROXY_PIECE_SECONDS,
) -> Piece:
    """Piece `index` transcoded to H.264/AAC of at most `max_width` pixels wide."""
    return _containing(
        lambda p, i, a: _proxy(p, i, a, max_width, piece_seconds), path, index, at, audio
    )


def _containing(make, path, index, at, audio) -> Piece:
    while True:
        piece = make(path, index, audio)
        if at is None or index == 0 or (piece.frames and piece.start <= Fraction(at)):
            if not piece.frames:
                raise PieceError(f"piece {index} of {path.name} holds no frame")
            return piece
        index -= 1


# -- reading ---------------------------------------------------------------------------------


@dataclass
class _Packets:
    video: list
    audio: list
    v0: int  # pts of the segment's first frame
    first_pts: int
    end_pts: int  # pts just after the piece's last frame
    last: bool
    in_v: object
    in_a: object


def _read_piece(container, index: int, audio: bool, piece_seconds: float) -> _Packets:
    """The packets of piece `index` (video from its keyframe, audio over the same time)."""
    in_v = container.streams.video[0]
    in_a = container.streams.audio[0] if audio and container.streams.audio else None
    tb = in_v.time_base
    v0 = _first_pts(container, in_v)
    lower = v0 + round(Fraction(index * piece_seconds) / tb)
    upper = v0 + round(Fraction((index + 1) * piece_seconds) / tb)
    if index:
        container.seek(lower, backward=True, any_frame=False, stream=in_v)
    streams = [in_v] + ([in_a] if in_a is not None else [])
    video, audio_packets = [], []
    first = end = None
    last = True
    frame_ticks = _frame_ticks(in_v)
    for packet in container.demux(streams):
        if packet.pts is None:
            continue
        if packet.stream is in_a:
            audio_packets.append(packet)
            continue
        if first is None:
            if packet.is_keyframe and (index == 0 or packet.pts >= lower):
                first = packet.pts
            else:
                continue
        elif packet.is_keyframe and packet.pts >= upper:
            last = False
            break
        video.append(packet)
        end = max(end or packet.pts, packet.pts + (packet.duration or frame_ticks))
    if first is None:
        return _Packets([], [], v0, v0, v0, True, in_v, in_a)
    if in_a is not None:
        audio_packets = _audio_within(audio_packets, in_a, tb, first, end)
    return _Packets(video, audio_packets, v0, first, end, last, in_v, in_a)


def _first_pts(container, stream) -> int:
    if stream.start_time is not None:
        return stream.start_time
    for packet in container.demux(stream):
        if packet.pts is not None:
            container.seek(0)
            return packet.pts
    raise PieceError("the segment has no video frame")


def _frame_ticks(stream) -> int:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return max(1, round(1 / (Fraction(rate) * stream.time_base)))


def _audio_within(packets, in_a, vtb, first, end):
    """Audio packets starting within [first, end) of the video timeline."""
    lo, hi = first * vtb, end * vtb
    return [p for p in packets if lo <= p.pts * in_a.time_base < hi]


def _open(path: Path):
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise PieceError(f"cannot read {path.name}: {error}") from error


def _piece(index, packets: _Packets, data, frames, codecs, technique) -> Piece:
    tb, v0 = packets.in_v.time_base, packets.v0
    return Piece(
        data=data,
        index=index,
        start=(packets.first_pts - v0) * tb,
        end=(packets.end_pts - v0) * tb,
        frames=frames,
        last=packets.last,
        codecs=codecs,
        technique=technique,
    )


# -- copy ------------------------------------------------------------------------------------


def _copy(path: Path, index: int, audio: bool, piece_seconds: float) -> Piece:
    with _open(path) as container:
        packets = _read_piece(container, index, audio, piece_seconds)
        if not packets.video:
            return _piece(index, packets, b"", 0, "", "copy")
        in_v, in_a = packets.in_v, packets.in_a
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4", options=FRAGMENTED) as out:
            v_out = out.add_stream_from_template(in_v)
            v_out.time_base = in_v.time_base
            a_out = None
            bsf = None
            if in_a is not None and packets.audio:
                a_out = out.add_stream_from_template(in_a)
                a_out.time_base = in_a.time_base
                if not in_a.codec_context.extradata:  # ADTS (MPEG-TS): raw AAC for mp4
                    a_out.codec_context.extradata = _adts_config(bytes(packets.audio[0]))
                    bsf = av.bitstream.BitStreamFilterContext("aac_adtstoasc", in_a)
            out.start_encoding()
            shift = packets.first_pts
            for packet in packets.video:
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = v_out
                out.mux(packet)
            if a_out is not None:
                a_shift = round(shift * in_v.time_base / in_a.time_base)
                for packet in packets.audio:
                    packet.pts -= a_shift
                    packet.dts = packet.pts
                    for filtered in bsf.filter(packet) if bsf else [packet]:
                        filtered.stream = a_out
                        out.mux(filtered)
        codecs = _video_codecs(in_v.codec_context.extradata)
        if a_out is not None:
            codecs += ", mp4a.40.2"
        return _piece(index, packets, buffer.getvalue(), len(packets.video), codecs, "copy")


def _adts_config(frame: bytes) -> bytes:
    """The AudioSpecificConfig an mp4 needs, from the header of one ADTS frame."""
    if len(frame) < 7 or frame[0] != 0xFF or frame[1] & 0xF0 != 0xF0:
        raise PieceError("AAC audio without a configuration or ADTS headers")
    profile, rate = (frame[2] >> 6) & 3, (frame[2] >> 2) & 0xF
    channels = ((frame[2] & 1) << 2) | (frame[3] >> 6)
    return (((profile + 1) << 11) | (rate << 7) | (channels << 3)).to_bytes(2, "big")


def _video_codecs(extradata: bytes | None) -> str:
    """avc1.PPCCLL from an avcC record, or from the SPS of Annex B parameter sets."""
    data = extradata or b""
    if data[:1] == b"\x01" and len(data) >= 4:
        profile = data[1:4]
    else:
        at = data.find(b"\x00\x00\x01")
        profile = data[at + 4 : at + 7] if at >= 0 else b""
    if len(profile) != 3:
        return "avc1.64001f"
    return "avc1." + profile.hex().upper()


# -- proxy -----------------------------------------------------------------------------------


def _proxy(path: Path, index: int, audio: bool, max_width: int, piece_seconds: float) -> Piece:
    with _open(path) as container:
        packets = _read_piece(container, index, audio, piece_seconds)
        if not packets.video:
            return _piece(index, packets, b"", 0, "", "proxy")
        in_v, in_a = packets.in_v, packets.in_a
        ctx = in_v.codec_context
        width = min(max_width, ctx.width) // 2 * 2
        height = max(2, round(ctx.height * width / ctx.width) // 2 * 2)
        rate = in_v.average_rate or in_v.guessed_rate or Fraction(25)
        buffer = io.BytesIO()
        frames = 0
        with av.open(buffer, "w", format="mp4", options=FRAGMENTED) as out:
            v_out = out.add_stream("libx264", rate=rate)
            v_out.width, v_out.height, v_out.pix_fmt = width, height, "yuv420p"
            v_out.codec_context.time_base = in_v.time_base
            # Keyframe every second so the page can seek inside a proxied piece.
            gop = max(1, round(Fraction(rate)))
            v_out.codec_context.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "crf": "26",
                "profile": "high",
                "x264-params": f"bframes=0:scenecut=0:keyint={gop}:min-keyint={gop}",
            }
            a_out = None
            if in_a is not None and packets.audio:
                a_out = out.add_stream("aac", rate=in_a.codec_context.sample_rate)
                a_out.codec_context.layout = "mono"
                a_out.codec_context.bit_rate = 48000
            shift = packets.first_pts
            for packet in packets.video:
                for frame in in_v.codec_context.decode(packet):
                    frames += _encode_scaled(out, v_out, frame, shift, width, height)
            for frame in in_v.codec_context.decode(None):
                frames += _encode_scaled(out, v_out, frame, shift, width, height)
            for packet in v_out.encode(None):
                out.mux(packet)
            if a_out is not None:
                _transcode_audio(out, in_a, a_out, packets.audio, shift * in_v.time_base)
        codecs = PROXY_CODECS if a_out is not None else PROXY_CODECS.split(",")[0]
        return _piece(index, packets, buffer.getvalue(), frames, codecs, "proxy")


def _encode_scaled(out, v_out, frame, shift, width, height) -> int:
    if frame.pts is None or frame.pts < shift:
        return 0
    scaled = frame.reformat(width=width, height=height, format="yuv420p")
    scaled.pts = frame.pts - shift
    scaled.time_base = frame.time_base
    for packet in v_out.encode(scaled):
        out.mux(packet)
    return 1


def _transcode_audio(out, in_a, a_out, packets, shift_seconds) -> None:
    """Decode, resample to mono float and encode AAC, keeping each sample's place in time."""
    rate = a_out.codec_context.sample_rate
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
    fifo = av.AudioFifo()
    first = None
    for packet in packets:
        for frame in in_a.codec_context.decode(packet):
            if first is None:
                first = round((frame.pts * frame.time_base - shift_seconds) * rate)
            frame.pts = None
            for converted in resampler.resample(frame):
                fifo.write(converted)
    size = a_out.codec_context.frame_size or 1024
    position = max(0, first or 0)
    while fifo.samples >= size:
        chunk = fifo.read(size)
        chunk.pts, chunk.time_base = position, Fraction(1, rate)
        position += size
        for packet in a_out.encode(chunk):
            out.mux(packet)
    for packet in a_out.encode(None):
        out.mux(packet)


# -- hover preview ---------------------------------------------------------------------------


def keyframe_before(path: Path, seconds: float, width: int):
    """The keyframe at or before `seconds` into the segment, scaled to `width` (a VideoFrame).

    Only one frame is decoded, so hovering along the timeline stays cheap; the preview is a
    glimpse of that moment, the player shows the exact frame.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        v0 = _first_pts(container, stream)
        container.seek(
            v0 + round(Fraction(seconds) / stream.time_base), backward=True, stream=stream
        )
        for frame in container.decode(stream):
            width = min(width, frame.width) // 2 * 2
            height = max(2, round(frame.height * width / frame.width / 2) * 2)
            return frame.reformat(width=width, height=height, format="yuvj420p")
    raise PieceError(f"no frame in {path.name} near {seconds:.1f} s")
