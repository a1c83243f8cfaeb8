"""Frame-exact export of recorded segments into one file.

How it works: segments are read one after another and their video is processed a GOP at a time
(keyframe to keyframe). A GOP entirely inside the requested range is stream-copied; a GOP cut by
the range (the start, or the end when frames are reordered) is decoded and only its wanted
frames re-encoded with settings matching the source ("smart cut"): libx264 with in-band
parameter sets under a distinct SPS/PPS id so the copied stream's stay valid, or libx265 after
which the copied stream's parameter sets are sent again. No edit lists are written, so FFmpeg
and GStreamer show the same frames. Pairs compat.py does not copy are transcoded to H.264/AAC
(that stream only). Each segment's timestamps are rebased so that its
first kept frame follows the previous one directly: recorded parts play back to back and gaps
are listed in the result, not filled. Audio follows the same per-segment rebasing and is cut to
the kept video of each segment.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import compat, nal

FORMATS = compat.FORMATS
TS_WRAP = 1 << 33


@dataclass(frozen=True)
class SourceSegment:
    """One recorded file and the wall times its index gives for it."""

    path: Path  # absolute path of a recorded file
    start: datetime  # aware UTC wall time of its first video frame
    end: datetime  # aware UTC end of its last video frame


@dataclass
class ExportResult:
    """What an export wrote, for the task record and the user."""

    frames: int = 0
    duration_s: float = 0.0
    bytes: int = 0
    technique: str = "stream_copy"  # stream_copy | exact_cut | transcode
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    first_frame: datetime | None = None
    last_frame: datetime | None = None
    transcoded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    audio: bool = False
    reencoded_frames: int = 0  # frames re-encoded by a smart cut (0 for a pure copy)

    def to_dict(self) -> dict:
        """A JSON-able summary."""

        def iso(value):
            return value.astimezone(UTC).isoformat() if value else None

        return {
            "frames": self.frames,
            "duration_s": round(self.duration_s, 6),
            "bytes": self.bytes,
            "technique": self.technique,
            "gaps": [[iso(a), iso(b)] for a, b in self.gaps],
            "first_frame": iso(self.first_frame),
            "last_frame": iso(self.last_frame),
            "transcoded": list(self.transcoded),
            "skipped": list(self.skipped),
            "audio": self.audio,
            "reencoded_frames": self.reencoded_frames,
        }


class ExportError(Exception):
    """An export failed; the message is meant for an operator."""


class NoRecordingError(ExportError):
    """Nothing is recorded in the requested range."""


class ExportCancelled(ExportError):
    """The export was cancelled by the caller."""


def export(
    segments: list[SourceSegment],
    start: datetime,
    end: datetime,
    fmt: str,
    out_path: Path,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    title: str | None = None,
) -> ExportResult:
    """Write the frames recorded in [start, end) from `segments` into `out_path` as `fmt`.

    The file is written under a temporary name beside `out_path` and renamed into place only
    when complete; on any error or cancellation the temporary file is removed and the error
    raised. `progress(fraction)` is called at least once a second and never goes backwards;
    `cancelled()` is polled so that a cancel stops the work within a second.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ExportError("start and end must be timezone-aware")
    if end <= start:
        raise ExportError("the end of the range must be after its start")
    out_path = Path(out_path)
    chosen = sorted(
        (s for s in segments if s.end > start and s.start < end), key=lambda s: s.start
    )
    if not chosen:
        raise NoRecordingError(f"nothing is recorded between {start} and {end}")
    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    job = _Export(chosen, start, end, fmt, tmp_path, progress, cancelled, title)
    try:
        result = job.run()
        os.replace(tmp_path, out_path)
    except BaseException:
        job.close_quietly()
        tmp_path.unlink(missing_ok=True)
        raise
    result.bytes = out_path.stat().st_size
    return result


# -- planning -------------------------------------------------------------------------------


@dataclass
class _Probe:
    segment: SourceSegment
    video: tuple | None  # (codec, width, height)
    audio: tuple | None  # (codec, sample_rate, channels)
    reordered: bool = False  # video has B-frames


# Containers whose header describes every stream: opening them needs no decoding. Probing
# (decoding a few frames to fill in stream details) costs ~10 ms a 1080p file otherwise.
_HEADER_CONTAINERS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi"})
_QUICK_OPEN = {"probesize": "32", "analyzeduration": "0"}


def _open_segment(path: Path, quick: bool = True):
    """Open a recorded file; without probing when its header tells all we need."""
    if quick and path.suffix.lower() in _HEADER_CONTAINERS:
        container = av.open(str(path), options=_QUICK_OPEN)
        video = container.streams.video
        if video and video[0].codec_context.width:
            return container
        container.close()
    return av.open(str(path))


def _probe(segment: SourceSegment, quick: bool) -> _Probe:
    with _open_segment(segment.path, quick) as container:
        video = audio = None
        reordered = False
        if container.streams.video:
            ctx = container.streams.video[0].codec_context
            video = (ctx.name, ctx.width, ctx.height)
            reordered = bool(ctx.has_b_frames)
        if container.streams.audio:
            ctx = container.streams.audio[0].codec_context
            audio = (ctx.name, ctx.sample_rate, ctx.layout.nb_channels)
        return _Probe(segment, video, audio, reordered)


def _adts_config(container, stream) -> bytes:
    """The AudioSpecificConfig of an ADTS stream, read from its first frame header."""
    for packet in container.demux(stream):
        header = bytes(packet)[:7]
        if len(header) == 7 and header[0] == 0xFF and header[1] & 0xF0 == 0xF0:
            object_type = (header[2] >> 6) + 1
            rate_index = (header[2] >> 2) & 0x0F
            channels = ((header[2] & 1) << 2) | (header[3] >> 6)
            value = (object_type << 11) | (rate_index << 7) | (channels << 3)
            return value.to_bytes(2, "big")
    raise ExportError("the AAC audio has no readable ADTS header")


def _decoded_frames(ctx, packets):
    for packet in packets:
        try:
            yield from ctx.decode(packet)
        except av.error.FFmpegError:
            continue
    try:
        yield from ctx.decode(None)
    except av.error.FFmpegError:
        pass
    ctx.flush_buffers()


# -- the export -----------------------------------------------------------------------------


class _Export:
    def __init__(self, segments, start, end, fmt, tmp_path, progress, cancelled, title):
        self.segments = segments
        self.start, self.end = start, end
        self.fmt = fmt
        self.tmp_path = tmp_path
        self.progress_cb = progress
        self.cancelled_cb = cancelled
        self.title = title
        self.result = ExportResult()
        self.out = None
        self.templates = []
        self.last_progress = -1.0
        self.last_report = 0.0
        # Output timeline: seconds of output written so far and where the video ends.
        self.out_end = Fraction(0)
        self.prev_wall_end: datetime | None = None
        self.encoder = None
        self.encoder_sps_id = 0
        self.video_out = None
        self.audio_out = None
        self.audio_sink = None
        self.reorder_delay = None  # B-frame delay of the copied video, in 1/90000 s
        self.audio_next_pts = 0  # audio never starts before the video (no negative times)
        self.audio_tb = None  # time base of audio_next_pts: the first copied audio stream's
        self.audio_adts = False
        self.last_video_dts = -math.inf  # seconds, of the last copied video packet

    # -- plan and open output --

    def run(self) -> ExportResult:
        probes = []
        for segment in self.segments:
            self._check_cancel()
            try:
                # B-frame detection needs probing; only asf output cares about it.
                probe = _probe(segment, quick=self.fmt not in compat.NO_REORDER)
                self.tick(self.start)
            except (av.error.FFmpegError, OSError) as error:
                self.result.skipped.append(f"{segment.path.name}: unreadable ({error})")
                continue
            if probe.video is None:
                self.result.skipped.append(f"{segment.path.name}: no video stream")
                continue
            probes.append(probe)
        if not probes:
            raise NoRecordingError("no readable recording in the requested range")
        self._plan(probes)
        self._open_output(probes)
        for probe in probes:
            if self._process_segment(probe.segment) == "done":
                break
        return self._finish()

    def _plan(self, probes):
        fmt = self.fmt
        videos = {p.video for p in probes}
        codec = probes[0].video[0]
        self.video_codec = codec
        if len(videos) > 1:
            self.video_mode = "transcode"
            changes = ", ".join(f"{c} {w}x{h}" for c, w, h in sorted(videos))
            self.result.transcoded.append(
                f"video: {codec} -> h264 (codec or resolution changes between segments: {changes})"
            )
        elif fmt in compat.NO_REORDER and any(p.reordered for p in probes):
            self.video_mode = "transcode"
            self.result.transcoded.append(
                f"video: {codec} -> h264 ({compat.NO_REORDER[fmt]})"
            )
        elif compat.can_copy(codec, fmt) and codec in compat.SMART_CUT | compat.INTRA_ONLY:
            self.video_mode = "copy"
        else:
            self.video_mode = "transcode"
            self.result.transcoded.append(
                f"video: {codec} -> h264 ({compat.copy_refusal(codec, fmt)})"
            )
        audios = {p.audio for p in probes if p.audio}
        self.audio_mode = None
        if audios:
            acodec = sorted(audios)[0][0]
            if len(audios) > 1:
                self.audio_mode = "transcode"
                self.result.transcoded.append(
                    f"audio: {acodec} -> aac (audio format changes between segments)"
                )
            elif compat.can_copy(acodec, fmt):
                self.audio_mode = "copy"
            else:
                self.audio_mode = "transcode"
                self.result.transcoded.append(
                    f"audio: {acodec} -> aac ({compat.copy_refusal(acodec, fmt)})"
                )
        self.result.audio = self.audio_mode is not None

    def _open_output(self, probes):
        self.out = av.open(str(self.tmp_path), "w", format=compat.MUXER[self.fmt])
        first = probes[0].segment
        creation = max(first.start, self.start)
        self.out.metadata["creation_time"] = creation.astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        self.out.metadata["title"] = self.title or (
            f"recording from {self.start.astimezone(UTC):%Y-%m-%d %H:%M:%S} "
            f"to {self.end.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
        vsrc = av.open(str(first.path))
        self.templates.append(vsrc)
        in_v = vsrc.streams.video[0]
        self.rate = in_v.average_rate or in_v.guessed_rate or Fraction(25)
        # AVI counts frames: its time base is one frame.
        self.encode_tb = 1 / Fraction(self.rate) if self.fmt == "avi" else Fraction(1, 90000)
        if self.video_mode == "copy":
            self.video_out = self.out.add_stream_from_template(in_v)
            # AVI counts frames: its time base is one frame.
            self.video_out.time_base = 1 / self.rate if self.fmt == "avi" else in_v.time_base
            nal_codec = self.video_codec in compat.SMART_CUT
            self.annexb = (
                nal_codec
                and self.fmt in compat.NEEDS_ANNEXB
                and nal.is_avcc(in_v.codec_context.extradata)
            )
            self.out_extradata = in_v.codec_context.extradata
            if self.annexb:
                # The filter rewrites the output stream's extradata to Annex B.
                av.bitstream.BitStreamFilterContext(
                    f"{self.video_codec}_mp4toannexb", in_v, self.video_out
                )
            elif nal_codec and self.fmt in compat.NEEDS_ANNEXB:
                # GStreamer's riff/asf parsing recognises Annex B extradata only with 4-byte
                # start codes; MPEG-TS/AVI sources may carry 3-byte ones.
                self.video_out.codec_context.extradata = nal.with_start_codes(
                    nal.parameter_sets(in_v.codec_context.extradata, self.video_codec)
                )
            if self.video_codec == "hevc" and self.fmt in ("mp4", "mov"):
                self.video_out.codec_tag = "hvc1"  # what Apple players require
            self.out_is_avcc = nal.is_avcc(self.video_out.codec_context.extradata)
            self.out_length_size = (
                nal.length_size(self.out_extradata, self.video_codec) if self.out_is_avcc else 0
            )
            self.encoder_template = in_v.codec_context
        else:
            ctx = in_v.codec_context
            self.video_out = self.out.add_stream("libx264", rate=self.rate)
            self.video_out.width, self.video_out.height = ctx.width, ctx.height
            self.video_out.pix_fmt = "yuv420p"
            self.video_out.codec_context.time_base = self.encode_tb
            self.video_out.codec_context.options = {
                "preset": "veryfast",
                "crf": "20",
                "x264-params": "bframes=0:scenecut=0",
            }
        if self.audio_mode:
            asrc_probe = next(p for p in probes if p.audio)
            asrc = av.open(str(asrc_probe.segment.path))
            self.templates.append(asrc)
            in_a = asrc.streams.audio[0]
            if self.audio_mode == "copy":
                self.audio_out = self.out.add_stream_from_template(in_a)
                self.audio_out.time_base = in_a.time_base
                ctx = in_a.codec_context
                self.audio_adts = ctx.name == "aac" and not ctx.extradata
                if self.audio_adts:
                    # MPEG-TS carries ADTS frames; other containers want raw AAC plus an
                    # AudioSpecificConfig, which must be known before the header is written.
                    self.audio_out.codec_context.extradata = _adts_config(asrc, in_a)
            else:
                rate = in_a.codec_context.sample_rate
                self.audio_out = self.out.add_stream("aac", rate=rate)
                layout = "mono" if in_a.codec_context.layout.nb_channels == 1 else "stereo"
                self.audio_out.codec_context.layout = layout
                self.audio_out.codec_context.bit_rate = 48000 * (1 if layout == "mono" else 2)
                self.audio_sink = _AudioTranscoder(self.out, self.audio_out, rate, layout)
        # Write the header now: the muxer fixes each stream's time base, which audio copying
        # needs to know.
        self.out.start_encoding()

    # -- per segment --

    def _process_segment(self, segment: SourceSegment) -> str | None:
        self._check_cancel()
        try:
            container = _open_segment(segment.path)
        except (av.error.FFmpegError, OSError) as error:
            self.result.skipped.append(f"{segment.path.name}: unreadable ({error})")
            return None
        try:
            return _SegmentReader(self, segment, container).run()
        finally:
            container.close()

    # -- encoding --

    def new_encoder(self, template, width, height):
        """An encoder for a smart-cut run: no B-frames, parameter sets in band.

        H.264 runs get their own SPS/PPS id, so the copied stream's stay valid. x265 cannot
        choose ids, so after an HEVC run the copied stream's parameter sets are sent again.
        """
        if self.video_codec == "hevc":
            return self._new_hevc_encoder(template, width, height)
        self.encoder_sps_id = self.encoder_sps_id % 31 + 1
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p" if template.pix_fmt in (None, "yuvj420p") else template.pix_fmt
        ctx.time_base = Fraction(1, 90000)
        ctx.framerate = self.rate
        # No lookahead and two threads: a partial GOP is short, and memory stays small.
        params = (
            f"bframes=0:scenecut=0:keyint=1000:sps-id={self.encoder_sps_id}"
            ":rc-lookahead=0:mbtree=0:sync-lookahead=0:threads=2"
        )
        level = getattr(template, "level", None) or 0
        if level > 0:
            params += f":level={level / 10:.1f}"
        ctx.options = {
            "preset": "veryfast",
            "crf": "18",
            "profile": nal.x264_profile(template.profile),
            "x264-params": params,
        }
        return ctx

    def _new_hevc_encoder(self, template, width, height):
        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p" if template.pix_fmt in (None, "yuvj420p") else template.pix_fmt
        ctx.time_base = Fraction(1, 90000)
        ctx.framerate = self.rate
        ctx.options = {
            "preset": "veryfast",
            "crf": "20",
            "x265-params": "bframes=0:scenecut=0:keyint=1000:rc-lookahead=0:log-level=error"
            ":repeat-headers=1",
        }
        return ctx

    def mux(self, packet):
        self.out.mux(packet)

    # -- progress, cancel --

    def _check_cancel(self):
        if self.cancelled_cb is not None and self.cancelled_cb():
            raise ExportCancelled("the export was cancelled")

    def tick(self, wall: datetime):
        """Report progress up to `wall` and honour a cancel; cheap enough to call per GOP."""
        now = time.monotonic()
        if now - self.last_report < 0.2:
            return
        self.last_report = now
        self._check_cancel()
        if self.progress_cb is not None:
            fraction = (wall - self.start) / (self.end - self.start)
            fraction = min(0.99, max(self.last_progress, fraction, 0.0))
            self.last_progress = fraction
            self.progress_cb(fraction)

    # -- bookkeeping of the output timeline --

    def note_segment_frames(self, first_wall, last_wall, frame_dur_s):
        """Record the wall span a segment contributed, and the gap before it."""
        tolerance = timedelta(seconds=frame_dur_s / 2)
        if self.result.first_frame is None:
            self.result.first_frame = first_wall
            if first_wall - self.start > tolerance:
                self.result.gaps.append((self.start, first_wall))
        elif first_wall - self.prev_wall_end > tolerance:
            self.result.gaps.append((self.prev_wall_end, first_wall))
        self.result.last_frame = last_wall
        self.prev_wall_end = last_wall + timedelta(seconds=frame_dur_s)

    def _finish(self) -> ExportResult:
        result = self.result
        if result.frames == 0:
            raise NoRecordingError(
                f"no video frame recorded between {self.start} and {self.end}"
                + (f" ({'; '.join(result.skipped)})" if result.skipped else "")
            )
        if self.audio_sink is not None:
            self.audio_sink.flush()
        if self.video_mode == "transcode":
            for packet in self.video_out.encode(None):
                self.mux(packet)
        self.out.close()
        self.close_quietly()
        if self.end - self.prev_wall_end > timedelta(seconds=float(1 / self.rate) / 2):
            result.gaps.append((self.prev_wall_end, self.end))
        result.duration_s = float(self.out_end)
        if self.video_mode == "transcode":
            result.technique = "transcode"
        elif result.reencoded_frames:
            result.technique = "exact_cut"
        else:
            result.technique = "stream_copy"
        if self.progress_cb is not None:
            self.progress_cb(1.0)
        return result

    def close_quietly(self):
        for container in [self.out, *self.templates]:
            if container is None:
                continue
            try:
                container.close()
            except Exception:  # noqa: BLE001 - already failing; keep the first error
                pass
        self.out = None
        self.templates = []


class _SegmentReader:
    """Reads one segment GOP by GOP and hands its wanted frames to the output."""

    def __init__(self, job: _Export, segment: SourceSegment, container):
        self.job = job
        self.segment = segment
        self.container = container
        self.in_v = container.streams.video[0]
        self.in_a = container.streams.audio[0] if container.streams.audio else None
        if job.audio_mode is None:
            self.in_a = None
        self.vtb = self.in_v.time_base
        self.vtb_f = float(self.vtb)
        self.in_v.codec_context.thread_type = "AUTO"  # for the GOPs we decode
        rate = self.in_v.average_rate or self.in_v.guessed_rate or job.rate
        self.frame_ticks = max(1, round(1 / (Fraction(rate) * self.vtb)))
        self.wrap = container.format.name == "mpegts"
        self.last_raw_pts = None
        self.unwrap = 0
        self.v0 = None  # pts of the segment's first frame, the index start
        self.offset = None  # ticks to add to a source pts to get the output pts
        self.first_kept = None
        self.last_kept_end = None
        self.kept_frames = 0
        self.pending_audio = []
        self.audio_offset = None  # self.offset in audio ticks
        self.audio_frame_size = 0
        if self.in_a is not None and self.in_a.codec_context.name == "aac":
            frame = self.in_a.codec_context.frame_size or 1024
            self.audio_frame_size = round(frame / self.in_a.codec_context.sample_rate
                                          / self.in_a.time_base)
        self.leading_dropped = 0
        self.bsf = None
        self.audio_bsf = None
        if self.in_a is not None and job.audio_adts:
            self.audio_bsf = av.bitstream.BitStreamFilterContext("aac_adtstoasc", self.in_a)
        self.inject_parameter_sets = False
        if job.video_mode == "copy" and job.annexb:
            self.bsf = av.bitstream.BitStreamFilterContext(
                f"{job.video_codec}_mp4toannexb", self.in_v
            )
        elif job.video_mode == "copy" and job.video_codec in compat.SMART_CUT:
            extradata = self.in_v.codec_context.extradata
            self.inject_parameter_sets = extradata != job.out_extradata
            self.length_size = job.out_length_size
            self.extradata = extradata

    # -- timing --

    def _ticks_at(self, wall: datetime, rounding) -> int:
        seconds = Fraction((wall - self.segment.start) // timedelta(microseconds=1), 1_000_000)
        return self.v0 + rounding(seconds / self.vtb)

    def _wall(self, pts: int) -> datetime:
        return self.segment.start + timedelta(seconds=float((pts - self.v0) * self.vtb))

    def _unwrapped(self, packet):
        pts = packet.pts
        if self.last_raw_pts is not None and pts < self.last_raw_pts - TS_WRAP // 2:
            self.unwrap += TS_WRAP
        self.last_raw_pts = pts
        if self.unwrap:
            packet.pts = pts + self.unwrap
            if packet.dts is not None:
                dts = packet.dts + self.unwrap
                # dts may still sit before the wrap while pts is already after it.
                packet.dts = dts - TS_WRAP if dts > packet.pts + TS_WRAP // 2 else dts
        return packet

    # -- main loop --

    def run(self) -> str | None:
        streams = [self.in_v] + ([self.in_a] if self.in_a is not None else [])
        gop = []
        state = None
        packets = self.container.demux(streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as error:
                # Only reading is forgiven: a damaged or half-written file ends here.
                self.job.result.skipped.append(
                    f"{self.segment.path.name}: truncated, read up to the damage ({error})"
                )
                break
            if packet.pts is None or packet.size == 0:
                continue
            if self.wrap:
                packet = self._unwrapped(packet)
            if packet.stream is self.in_a:
                self.pending_audio.append(packet)
                if state == "done" and self._audio_past_end(packet):
                    break
                continue
            if state == "done":
                # Past the range: read on only for audio interleaved after the last GOP.
                if self.in_a is None or packet.pts > self.e_ticks + 2 * self.frame_ticks * 25:
                    break
                continue
            if self.v0 is None:
                self.v0 = packet.pts
                if packet.dts is not None and self.job.reorder_delay is None:
                    delay = (packet.pts - packet.dts) * self.vtb * 90000
                    self.job.reorder_delay = max(0, round(delay))
                self.s_ticks = self._ticks_at(self.job.start, math.floor)
                self.e_ticks = self._ticks_at(self.job.end, math.ceil)
            if not gop and not packet.is_keyframe:
                # Frames before the file's first keyframe cannot be decoded: leave them.
                self.leading_dropped += 1
                continue
            if packet.is_keyframe and gop:
                state = self._flush_gop(gop, next_key=packet.pts)
                gop = []
                if state == "done":
                    continue
            gop.append(packet)
        if state != "done" and gop:
            state = self._flush_gop(gop, next_key=None)
        self._flush_encoder()
        self._release_audio(final=True)
        if self.leading_dropped:
            self.job.result.skipped.append(
                f"{self.segment.path.name}: {self.leading_dropped} frames before its first"
                " keyframe are not decodable and were left out"
            )
        if self.kept_frames:
            frame_s = float(self.frame_ticks * self.vtb)
            self.job.note_segment_frames(
                self._wall(self.first_kept), self._wall(self.last_kept_end - self.frame_ticks),
                frame_s,
            )
            self.job.out_end = Fraction(self.last_kept_end + self.offset) * self.vtb
        return state

    def _audio_past_end(self, packet) -> bool:
        end = self.last_kept_end if self.last_kept_end is not None else self.e_ticks
        return float(packet.pts * packet.time_base) > float(end * self.vtb) + 1

    def _flush_gop(self, gop, next_key):
        """Copy, cut or re-encode one GOP; return "done" once past the range end."""
        job = self.job
        s_ticks, e_ticks = self.s_ticks, self.e_ticks
        kept, before, after = [], False, False
        for packet in gop:
            duration = packet.duration or self.frame_ticks
            if packet.pts + duration <= s_ticks:
                before = True
            elif packet.pts >= e_ticks:
                after = True
            else:
                kept.append(packet)
        if not kept:
            self._release_audio(until_pts=next_key)
            return "done" if after and not before else None
        first_pts = min(p.pts for p in kept)
        last_end = max(p.pts + (p.duration or self.frame_ticks) for p in kept)
        if self.offset is None:
            out_start = job.out_end / self.vtb
            self.offset = round(out_start) - first_pts
            self.first_kept = first_pts
        self.last_kept_end = last_end
        keyframe_kept = gop[0] in kept
        reorder = any(p.dts is not None and p.dts != p.pts for p in gop)
        if (
            job.video_mode == "copy"
            and keyframe_kept
            and not before
            and (not after or not reorder)
        ):
            self._flush_encoder()
            self._copy(kept)
        else:
            self._reencode(gop, {p.pts for p in kept})
        self.kept_frames += len(kept)
        job.result.frames += len(kept)
        self._release_audio(until_pts=next_key)
        job.tick(self._wall(last_end))
        return "done" if after else None

    def _copy(self, packets):
        job = self.job
        offset = self.offset
        out = job.video_out
        for packet in packets:
            if self.inject_parameter_sets and packet.is_keyframe:
                packet = self._with_parameter_sets(packet)
                self.inject_parameter_sets = False
            packet.pts += offset
            if packet.dts is not None:
                packet.dts += offset
                dts_s = packet.dts * self.vtb_f
                if dts_s <= job.last_video_dts:
                    # A recorder's timestamps went backwards: drop rather than fail the muxer.
                    job.result.frames -= 1
                    self.kept_frames -= 1
                    continue
                job.last_video_dts = dts_s
            if self.bsf is not None:
                for filtered in self.bsf.filter(packet):
                    filtered.stream = out
                    job.mux(filtered)
            else:
                packet.stream = out
                job.mux(packet)

    def _with_parameter_sets(self, packet):
        """Prefix a keyframe with this segment's SPS/PPS when they differ from the output's."""
        nals = nal.parameter_sets(self.extradata, self.job.video_codec)
        if self.length_size:
            prefix = b"".join(len(n).to_bytes(self.length_size, "big") + n for n in nals)
        else:
            prefix = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        fresh = av.Packet(prefix + bytes(packet))
        fresh.pts, fresh.dts, fresh.duration = packet.pts, packet.dts, packet.duration
        fresh.time_base = packet.time_base
        fresh.is_keyframe = True
        return fresh

    def _reencode(self, gop, wanted_pts):
        job = self.job
        ctx = self.in_v.codec_context
        for frame in _decoded_frames(ctx, gop):
            if frame.pts is None or frame.pts not in wanted_pts:
                continue
            job.tick(self._wall(frame.pts))
            out_pts = frame.pts + self.offset
            if job.video_mode == "transcode":
                self._encode_transcoded(frame, out_pts)
            else:
                self._encode_smart(frame, out_pts)

    def _encode_transcoded(self, frame, out_pts):
        job = self.job
        out = job.video_out
        if frame.width != out.width or frame.height != out.height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=out.width, height=out.height, format="yuv420p")
        frame.pts = round(out_pts * self.vtb / job.encode_tb)
        frame.time_base = job.encode_tb
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in out.encode(frame):
            job.mux(packet)

    def _encode_smart(self, frame, out_pts):
        job = self.job
        if job.encoder is None:
            job.encoder = job.new_encoder(job.encoder_template, frame.width, frame.height)
        frame.pts = round(out_pts * self.vtb * 90000)
        frame.time_base = Fraction(1, 90000)
        frame.pict_type = av.video.frame.PictureType.NONE
        job.result.reencoded_frames += 1
        for packet in job.encoder.encode(frame):
            self._mux_encoded(packet)

    def _flush_encoder(self):
        job = self.job
        if job.encoder is None:
            return
        for packet in job.encoder.encode(None):
            self._mux_encoded(packet)
        job.encoder = None
        if job.video_codec == "hevc" and self.bsf is None:
            # The run replaced the decoder's parameter sets (same ids): send the copy's again.
            self.inject_parameter_sets = True

    def _mux_encoded(self, packet):
        job = self.job
        data = bytes(packet)
        if job.out_is_avcc:
            data = nal.annexb_to_avcc(data, job.out_length_size)
        fresh = av.Packet(data)
        fresh.pts = packet.pts
        fresh.dts = packet.pts - (job.reorder_delay or 0)
        fresh.duration = packet.duration or round(self.frame_ticks * self.vtb * 90000)
        fresh.time_base = Fraction(1, 90000)
        fresh.is_keyframe = packet.is_keyframe
        fresh.stream = job.video_out
        job.mux(fresh)

    # -- audio --

    def _release_audio(self, until_pts=None, final=False):
        """Cut or drop the audio whose fate the video decisions so far settle."""
        if self.in_a is None or not self.pending_audio:
            return
        atb = float(self.in_a.time_base)
        vtb = float(self.vtb)
        if final or until_pts is None:
            limit = math.inf
        else:
            limit = until_pts * vtb
        keep_from = self.first_kept * vtb if self.first_kept is not None else None
        keep_to = self.last_kept_end * vtb if self.last_kept_end is not None else None
        remaining = []
        job = self.job
        for packet in self.pending_audio:
            middle = (packet.pts + (packet.duration or 0) / 2) * atb
            if middle >= limit:
                remaining.append(packet)
                continue
            if keep_from is None or not keep_from <= middle < keep_to:
                continue
            if job.audio_mode == "copy":
                self._copy_audio(packet)
            else:
                job.audio_sink.add(
                    self.in_a, packet,
                    offset_s=float(self.offset * vtb), window=(keep_from, keep_to),
                )
        self.pending_audio = remaining

    def _copy_audio(self, packet):
        """Rebase an audio packet, keep the audio contiguous across joins, and mux it.

        Contiguity is kept in exact source ticks and only then converted to the muxer's time
        base, so coarse muxer units (AVI counts whole AAC frames, FLV/MKV milliseconds) neither
        collide nor drift.
        """
        job = self.job
        if self.audio_offset is None:
            self.audio_out_tb = job.audio_out.time_base
            if job.audio_tb is None:
                job.audio_tb = self.in_a.time_base
            self.audio_offset = round(self.offset * self.vtb / self.in_a.time_base)
            to_job = self.in_a.time_base / job.audio_tb
            to_out = job.audio_tb / self.audio_out_tb
            self.audio_scale = (to_job.numerator, to_job.denominator,
                                to_out.numerator, to_out.denominator)
        jn, jd, on, od = self.audio_scale
        pts = (packet.pts + self.audio_offset) * jn // jd
        # A segment's last AAC frame may be marked short, yet decodes to a whole frame: count
        # what players will play, or the audio runs ahead a little at every join.
        duration = max(packet.duration or 0, self.audio_frame_size) * jn // jd
        floor = job.audio_next_pts
        if pts < floor - duration / 2:
            return  # overlaps audio already written from the previous segment
        if pts <= floor + duration / 2:
            # Players count samples: stay contiguous, off by under half a frame, which the
            # next join corrects rather than accumulates.
            pts = floor
        job.audio_next_pts = pts + duration
        out_pts = (2 * pts * on + od) // (2 * od)
        out_end = (2 * (pts + duration) * on + od) // (2 * od)
        packet.time_base = self.audio_out_tb
        packet.pts = packet.dts = out_pts
        packet.duration = max(1, out_end - out_pts)
        if self.audio_bsf is not None:
            for filtered in self.audio_bsf.filter(packet):
                filtered.stream = job.audio_out
                job.mux(filtered)
            return
        packet.stream = job.audio_out
        job.mux(packet)


class _AudioTranscoder:
    """Decodes kept audio, trims it to the video window exactly, and encodes AAC."""

    def __init__(self, out, stream, rate, layout):
        self.out = out
        self.stream = stream
        self.rate = rate
        self.layout = layout
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self.channels = 1 if layout == "mono" else 2
        self.buffer = np.zeros((self.channels, 0), dtype=np.float32)
        self.buffer_pos = None  # output sample index of buffer[:, 0]
        self.frame_size = 1024

    def add(self, in_stream, packet, offset_s, window):
        ctx = in_stream.codec_context
        try:
            frames = ctx.decode(packet)
        except av.error.FFmpegError:
            return
        for frame in frames:
            if frame.pts is None:
                continue
            file_start = float(frame.pts * frame.time_base)
            for converted in self.resampler.resample(frame):
                samples = converted.to_ndarray().reshape(self.channels, -1)
                self._place(samples, file_start, offset_s, window)
                file_start += samples.shape[1] / self.rate

    def _place(self, samples, file_start, offset_s, window):
        count = samples.shape[1]
        first = max(0, math.ceil((window[0] - file_start) * self.rate))
        last = min(count, math.ceil((window[1] - file_start) * self.rate))
        if last <= first:
            return
        samples = samples[:, first:last]
        pos = round((file_start + offset_s) * self.rate) + first
        if self.buffer_pos is None:
            self.buffer_pos = pos
        end = self.buffer_pos + self.buffer.shape[1]
        if pos > end:
            silence = np.zeros((self.channels, pos - end), dtype=np.float32)
            self.buffer = np.concatenate([self.buffer, silence], axis=1)
        elif pos < end:
            samples = samples[:, end - pos :]
        self.buffer = np.concatenate([self.buffer, samples], axis=1)
        self._encode_full_frames()

    def _encode_full_frames(self, final=False):
        size = self.frame_size
        while self.buffer.shape[1] >= size or (final and self.buffer.shape[1]):
            chunk = self.buffer[:, :size]
            self.buffer = self.buffer[:, chunk.shape[1] :]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout=self.layout
            )
            frame.sample_rate = self.rate
            frame.pts = self.buffer_pos
            frame.time_base = Fraction(1, self.rate)
            self.buffer_pos += chunk.shape[1]
            for packet in self.stream.encode(frame):
                self.out.mux(packet)

    def flush(self):
        if self.buffer_pos is not None:
            self._encode_full_frames(final=True)
        for packet in self.stream.encode(None):
            self.out.mux(packet)
