"""Follows an export plan (plan.py) through PyAV: reads the planned packets of each segment,
copies or re-encodes them, and writes the output with FFmpeg's muxers.

Nothing is decided here that the plan did not decide: packets are matched to the plan by their
number in each stream (the frame index numbers them the same way, demuxing with the same
options), their timestamps come from the plan, and what is written is counted per stream and
compared with the plan at the end: a difference fails the export with both numbers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av

from . import compat, nal
from .audiotranscode import AudioTranscoder
from .errors import ExportCancelled, ExportError
from .plan import Copy, Plan, PlanSegment, Reencode

# The frame index demuxes with FFmpeg's own MPEG-TS wrap correction off; so do we, so packets
# are numbered and stamped alike.
DEMUX_OPTIONS = {"correct_ts_overflow": "0"}
TS_WRAP = 1 << 33


class Progress:
    """Progress and cancel, at most five times a second."""

    def __init__(
        self, report: Callable[[float], None] | None, cancelled: Callable[[], bool] | None
    ):
        self.report, self.cancelled = report, cancelled
        self.last_report = 0.0
        self.fraction = 0.0

    def check_cancel(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise ExportCancelled("the export was cancelled")

    def tick(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last_report < 0.2:
            return
        self.last_report = now
        self.check_cancel()
        self.fraction = min(0.99, max(self.fraction, fraction))
        if self.report is not None:
            self.report(self.fraction)


def execute(
    plan: Plan,
    segments: list[PlanSegment],
    out_path: Path,
    progress: Progress,
    title: str,
    creation: datetime,
    ahead=None,
) -> None:
    """Write `plan` to `out_path` (the caller renames and removes on failure). `ahead`: spans
    encoded ahead (ahead.SpansAhead) to take instead of encoding them."""
    output = _Output(plan, segments, out_path, title, creation)
    try:
        for seg_plan in plan.segment_plans(segments):
            progress.check_cancel()
            run = SegmentRun(plan, segments[seg_plan.segment], seg_plan, output, progress, ahead)
            run.run()
            run.take_ahead()
        output.finish()
    finally:
        output.close()


# -- the output file -------------------------------------------------------------------------


class _Output:
    """The output container: its streams, the encoders feeding them, and what was written."""

    def __init__(
        self, plan: Plan, segments: list[PlanSegment], path: Path, title: str, creation: datetime
    ):
        self.plan = plan
        self.container = av.open(str(path), "w", format=compat.MUXER[plan.fmt])
        self.container.metadata["creation_time"] = creation.astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        self.container.metadata["title"] = title
        self.templates = []
        self.written = {"video": 0, "audio": 0}
        first = segments[plan.outlines[0].segment]
        self.video = _VideoOut(self, plan, segments, first)
        self.audio = _AudioOut(self, plan, segments) if plan.audio_mode else None
        # The header fixes each stream's time base, which the conversions below need.
        self.container.start_encoding()

    def open_template(self, path: Path):
        source = av.open(str(path), options=DEMUX_OPTIONS)
        self.templates.append(source)
        return source

    def mux(self, packet, media: str) -> None:
        self.container.mux(packet)
        self.written[media] += 1

    def finish(self) -> None:
        self.video.finish()
        if self.audio is not None:
            self.audio.finish()
        planned = self.plan.frames
        if self.written["video"] != planned:
            raise ExportError(
                f"the plan has {planned} video frames but {self.written['video']} were written"
            )
        if self.audio is not None and self.plan.audio_mode == "copy":
            wanted = sum(o.audio_packets or 0 for o in self.plan.outlines)
            if self.written["audio"] != wanted:
                raise ExportError(
                    f"the plan has {wanted} audio packets but {self.written['audio']} were written"
                )
        self.container.close()
        self.container = None

    def close(self) -> None:
        for container in [self.container, *self.templates]:
            if container is None:
                continue
            try:
                container.close()
            except Exception:  # noqa: BLE001 - already failing; keep the first error
                pass
        self.container = None
        self.templates = []


def _to_ticks(value: int, unit: Fraction, time_base: Fraction) -> int:
    """Plan ticks to a stream's ticks, rounded half up."""
    scaled = value * unit / time_base
    return (scaled.numerator * 2 + scaled.denominator) // (2 * scaled.denominator)


def _set_colour(ctx, info) -> None:
    """Carry the source's colour description onto an encoder (0 / 2: unspecified)."""
    if info.color_range:
        ctx.color_range = info.color_range
    for name in ("color_primaries", "color_trc", "colorspace"):
        value = getattr(info, name)
        if value not in (0, 2):
            setattr(ctx, name, value)


def _encoder_pix_fmt(info) -> str:
    # Full-range 4:2:0 (yuvj420p) stays full range: x264 takes it as is and flags it.
    return info.pix_fmt if info.pix_fmt in ("yuv420p", "yuvj420p") else "yuv420p"


class SmartCutVideo:
    """What both video outputs (this muxer's and mp4out's) share: a new encoder per smart-cut
    run. The output sets plan, info, rate, profile, level and encoder_sps_id, and has a
    `queue` (InOrder) and `encoded(data)` for the Encoder's packets."""

    def new_smart_encoder(self, width: int, height: int):
        self.encoder_sps_id = self.encoder_sps_id % 31 + 1
        ctx = smart_encoder(
            self.plan.video_codec,
            self.info,
            width,
            height,
            self.rate,
            self.profile,
            self.level,
            self.encoder_sps_id,
        )
        return Encoder(self, ctx, own=True)


class _VideoOut(SmartCutVideo):
    """The output video stream: copied packets, re-encoded runs, or a transcode."""

    def __init__(self, output: _Output, plan: Plan, segments: list[PlanSegment], first):
        self.output, self.plan = output, plan
        info = first.index.video.info
        self.info = info
        rates = [s.video.frame_rate for s in plan.summaries if s.video is not None]
        self.rate = max((Fraction(r) for r in rates if r), default=plan.frame_rate)
        container = output.container
        self.queue = InOrder(self)
        self.last_dts = None  # of the last packet written, output stream ticks
        self.encoder = None  # the transcoder (one for the file)
        self.encoder_sps_id = 0
        if plan.video_mode == "copy":
            source = output.open_template(first.path)
            in_v = source.streams.video[0]
            self.stream = container.add_stream_from_template(in_v)
            self.stream.time_base = 1 / self.rate if plan.fmt == "avi" else in_v.time_base
            self.profile = in_v.codec_context.profile
            self.level = getattr(in_v.codec_context, "level", 0) or 0
            self._copy_setup(first, segments)
        else:
            self.stream = container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = info.width, info.height
            self.stream.pix_fmt = _encoder_pix_fmt(info)
            _set_colour(self.stream.codec_context, info)
            self.stream.codec_context.time_base = 1 / self.rate
            self.stream.codec_context.options = {
                "preset": "veryfast",
                "crf": "20",
                "x264-params": "bframes=0:scenecut=0",
            }
            if plan.fmt == "avi":
                self.stream.time_base = 1 / self.rate
            self.encoder = Encoder(self, self.stream.codec_context, own=False)

    def _copy_setup(self, first, segments) -> None:
        plan, info = self.plan, self.info
        self.nal_codec = plan.video_codec in compat.SMART_CUT
        self.annexb = self.nal_codec and plan.fmt in compat.NEEDS_ANNEXB
        extradata = info.extradata
        if self.annexb:
            # GStreamer's riff/asf parsing wants Annex B extradata with 4-byte start codes.
            extradata = nal.with_start_codes(nal.parameter_sets(info.extradata, plan.video_codec))
            self.stream.codec_context.extradata = extradata
        self.extradata = extradata
        self.out_avcc = self.nal_codec and nal.is_avcc(extradata)
        self.length_size = nal.length_size(extradata, plan.video_codec) if self.out_avcc else 0
        if plan.video_codec == "hevc" and plan.fmt in ("mp4", "mov"):
            # Parameter sets in band (re-encoded runs, a segment's own sets): `hev1`; else the
            # `hvc1` Apple players require (all sets in hvcC).
            in_band = plan.reencoded_frames or any(
                plan.summaries[o.segment].video.extradata != info.extradata for o in plan.outlines
            )
            self.stream.codec_tag = "hev1" if in_band else "hvc1"
        self.prefixed = self._copies_needing_parameter_sets(plan, segments)

    def _copies_needing_parameter_sets(self, plan: Plan, segments) -> set[tuple[int, int]]:
        """Copy runs whose first packet must carry its segment's parameter sets in band: the
        segment's differ from the output's, or an x265 run before it replaced them (x265
        cannot choose other ids than the copy's)."""
        chosen: set[tuple[int, int]] = set()  # (segment, step position)
        if not self.nal_codec or self.annexb:
            return chosen  # Annex B output: every copied keyframe carries its sets
        after_run = False
        for outline in plan.outlines:
            info = plan.summaries[outline.segment].video
            first_copy = info.extradata != self.info.extradata
            for position, kind in enumerate(outline.steps):
                if kind == "reencode":
                    after_run = True
                    continue
                if first_copy or (after_run and plan.video_codec == "hevc"):
                    chosen.add((outline.segment, position))
                first_copy = after_run = False
        return chosen

    # -- writing --

    def write(self, data: bytes, pts: int, dts: int, keyframe: bool, duration: int) -> None:
        """Write one video packet with plan timestamps (unit)."""
        unit, tb = self.plan.unit, self.stream.time_base
        packet = av.Packet(data)
        packet.time_base = tb
        out_pts, out_dts = _to_ticks(pts, unit, tb), _to_ticks(dts, unit, tb)
        last = self.last_dts
        if last is not None and out_dts <= last:
            # A coarse muxer unit (AVI counts frames) merged two decode times: keep order.
            out_dts = last + 1
        out_pts = max(out_pts, out_dts)
        self.last_dts = out_dts
        packet.pts, packet.dts = out_pts, out_dts
        packet.duration = max(1, _to_ticks(duration, unit, tb))
        packet.is_keyframe = keyframe
        packet.stream = self.stream
        self.output.mux(packet, "video")

    def encoded(self, data: bytes) -> bytes:
        """An encoder's Annex B packet in the output's NAL framing."""
        return nal.annexb_to_avcc(data, self.length_size) if self.out_avcc else data

    def finish(self) -> None:
        if self.encoder is not None:
            self.encoder.flush()
        self.queue.drain_all()


def smart_encoder(
    codec: str, info, width: int, height: int, rate: Fraction, profile, level: int, sps_id: int
):
    """An encoder for a smart-cut run: no B-frames, parameter sets in band, the source's
    colour description.

    H.264 runs get their own SPS/PPS id, so the copied stream's stay valid. x265 cannot
    choose ids, so after an HEVC run the copied stream's parameter sets are sent again.
    """
    if codec == "hevc":
        ctx = av.CodecContext.create("libx265", "w")
        ctx.pix_fmt = "yuv420p"
        ctx.options = {
            "preset": "veryfast",
            "crf": "20",
            "x265-params": "bframes=0:scenecut=0:keyint=1000:rc-lookahead=0:log-level=error"
            ":repeat-headers=1",
        }
    else:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.pix_fmt = _encoder_pix_fmt(info)
        # No lookahead and two threads: a partial GOP is short, and memory stays small.
        # ultrafast with the deblocking filter back on, at CRF 16: 3-5x faster than veryfast
        # at CRF 18 on 1080p, as close to the decoded source (PSNR) for about 1.7x the bytes
        # of a span that is at most one GOP.
        params = (
            f"bframes=0:scenecut=0:keyint=1000:sps-id={sps_id}"
            ":rc-lookahead=0:mbtree=0:sync-lookahead=0:threads=2:deblock=0,0"
        )
        if level > 0:
            params += f":level={level / 10:.1f}"
        ctx.options = {
            "preset": "ultrafast",
            "crf": "16",
            "profile": nal.x264_profile(profile),
            "x264-params": params,
        }
    ctx.width, ctx.height = width, height
    ctx.time_base = 1 / rate
    ctx.framerate = rate
    _set_colour(ctx, info)
    return ctx


class InOrder:
    """Writes video packets in the plan's step order though they are produced out of it
    (a copy run is read while the re-encoded head before it is still being decoded)."""

    def __init__(self, video: _VideoOut):
        self.video = video
        self.pending: dict[object, list] = {}
        self.order: deque = deque()
        self.done: set = set()

    def expect(self, steps) -> None:
        for step in steps:
            self.order.append(step)
            self.pending[step] = []

    def put(self, step, item) -> None:
        if self.order and self.order[0] is step:
            self.video.write(*item)
        else:
            self.pending[step].append(item)

    def complete(self, step) -> None:
        self.done.add(step)
        while self.order and self.order[0] in self.done:
            # Forget written steps: a day's plan must not stay reachable from here.
            written = self.order.popleft()
            self.done.discard(written)
            self.pending.pop(written, None)
            if self.order:
                head = self.order[0]
                for item in self.pending.pop(head, []):
                    self.video.write(*item)
                self.pending[head] = []

    def drain_all(self) -> None:
        while self.order:
            self.complete(self.order[0])


class Encoder:
    """An encoder whose i-th output packet takes the i-th planned timestamp pair."""

    def __init__(self, video: _VideoOut, ctx, own: bool):
        self.video, self.ctx, self.own = video, ctx, own
        self.fifo: deque = deque()  # (step, pts, dts, duration) per frame fed
        self.fed = 0

    def encode(self, frame, step, pts: int, dts: int, duration: int) -> None:
        ctx = self.ctx
        if (frame.width, frame.height, frame.format.name) != (ctx.width, ctx.height, ctx.pix_fmt):
            frame = frame.reformat(width=ctx.width, height=ctx.height, format=ctx.pix_fmt)
        frame.pts = self.fed
        frame.time_base = ctx.time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        self.fed += 1
        self.fifo.append((step, pts, dts, duration))
        self._out(ctx.encode(frame))

    def flush(self) -> None:
        self._out(self.ctx.encode(None))
        if self.fifo:
            raise ExportError(
                f"the encoder returned {len(self.fifo)} frames fewer than it was given"
            )

    def _out(self, packets) -> None:
        for packet in packets:
            step, pts, dts, duration = self.fifo.popleft()
            data = bytes(packet)
            if not self.own:
                # The file's transcoder: its packets come out in output order, write them.
                self.video.write(data, pts, dts, packet.is_keyframe, duration)
                continue
            self.video.queue.put(
                step, (self.video.encoded(data), pts, dts, packet.is_keyframe, duration)
            )


class _AudioOut:
    """The output audio stream: copied packets (ADTS headers stripped) or AAC from a transcode."""

    def __init__(self, output: _Output, plan: Plan, segments: list[PlanSegment]):
        self.output, self.plan = output, plan
        with_audio = [o.segment for o in plan.outlines if o.audio_packets is not None]
        any_audio = [k for k, s in enumerate(plan.summaries) if s.audio is not None]
        first = plan.summaries[(with_audio or any_audio)[0]]
        info = first.audio
        self.info = info
        self.transcoder = None
        if plan.audio_mode == "copy":
            source = output.open_template(first.path)
            in_a = source.streams.audio[0]
            self.stream = output.container.add_stream_from_template(in_a)
            self.stream.time_base = in_a.time_base
            if info.adts or (info.codec == "aac" and not in_a.codec_context.extradata):
                # MPEG-TS carries ADTS frames; other containers want raw AAC plus an
                # AudioSpecificConfig, which must be known before the header is written.
                self.stream.codec_context.extradata = _adts_config(source, in_a)
        else:
            rate = info.sample_rate
            self.stream = output.container.add_stream("aac", rate=rate)
            layout = "mono" if info.channels == 1 else "stereo"
            self.stream.codec_context.layout = layout
            self.stream.codec_context.bit_rate = 48000 * (1 if layout == "mono" else 2)
            self.transcoder = AudioTranscoder(output, self.stream, rate, layout)

    def copy(self, data: bytes, adts: bool, pts: int, duration: int) -> None:
        if adts:
            data = _strip_adts(data)
        unit, tb = self.plan.unit, self.stream.time_base
        packet = av.Packet(data)
        packet.time_base = tb
        start, end = _to_ticks(pts, unit, tb), _to_ticks(pts + duration, unit, tb)
        packet.pts = packet.dts = start
        packet.duration = max(1, end - start)
        packet.stream = self.stream
        self.output.mux(packet, "audio")

    def finish(self) -> None:
        if self.transcoder is not None:
            self.transcoder.flush()


def _strip_adts(data: bytes) -> bytes:
    """Raw AAC from one ADTS frame (7-byte header, 9 with CRC)."""
    if len(data) >= 7 and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:
        return data[7 if data[1] & 1 else 9 :]
    return data


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


# -- one segment --------------------------------------------------------------------------------


def check_packet(path: Path, index, number: int, packet) -> None:
    """ExportError unless the packet read is the one the index numbers `number`."""
    if packet.pts is None:
        return
    expected = int(index.pts[number])
    if packet.pts != expected and packet.pts % TS_WRAP != expected % TS_WRAP:
        raise ExportError(
            f"{path.name} changed since it was indexed (packet {number}: pts "
            f"{packet.pts}, index {expected})"
        )


class SegmentRun:
    """Reads one segment's planned packets once, in file order, and hands each to its steps."""

    def __init__(
        self, plan: Plan, seg: PlanSegment, seg_plan, output: _Output, progress, ahead=None
    ):
        self.plan, self.seg, self.seg_plan = plan, seg, seg_plan
        self.output, self.progress = output, progress
        self.video_index = seg.index.video
        self.audio_index = seg.index.audio
        # A writer that copies byte ranges takes whole copy runs from the index: not read here.
        by_range = getattr(output, "copies_by_range", False)
        self.copy_at = {}  # packet number -> (copy step, position in it)
        self.spans = []
        self.ahead, self.from_ahead = ahead, []  # (step, key) of spans encoded ahead
        for step in seg_plan.video:
            if isinstance(step, Copy):
                if not by_range:
                    for k, j in enumerate(step.packets.tolist()):
                        self.copy_at[j] = (step, k)
                continue
            key = self._key_ahead(step)
            if key is None:
                self.spans.append(_Span(self, step))
            else:
                self.from_ahead.append((step, key))
        output.video.queue.expect(seg_plan.video)
        self.copies_left = {
            id(s): 0 if by_range else len(s.packets) for s in seg_plan.video if isinstance(s, Copy)
        }
        for step in seg_plan.video:
            if isinstance(step, Copy) and (by_range or not len(step.packets)):
                if by_range:
                    output.video.queue.put(step, ("range", seg, step))
                output.video.queue.complete(step)
        self.audio_run = seg_plan.audio
        self.audio_at = {}
        if self.audio_run is not None and by_range and output.audio.transcoder is None:
            output.audio.copy_range(seg, self.audio_run)
        elif self.audio_run is not None:
            self.audio_at = {j: k for k, j in enumerate(self.audio_run.packets.tolist())}
        ends = [s.step.decode_to for s in self.spans] + [max(self.copy_at, default=-1) + 1]
        self.video_end = max(ends)
        self.audio_end = max(self.audio_at, default=-1) + 1
        sets = nal.parameter_sets(self.video_index.info.extradata, plan.video_codec)
        self.parameter_sets = self._framed(sets) if plan.video_codec in compat.SMART_CUT else b""

    def _key_ahead(self, step: Reencode):
        """The key of this span if it is being encoded ahead (ahead.py), else None."""
        if self.ahead is None or self.plan.video_mode != "copy":
            return None
        from .ahead import span_key  # ahead.py builds on this module

        key = span_key(self.seg.path, step, self.output.video)
        return key if self.ahead.has(key) else None

    def take_ahead(self) -> None:
        """Write the spans encoded ahead (waiting for them); one whose work ahead failed is
        encoded now. Called after run(), as late as the output allows (the work overlaps)."""
        for step, key in self.from_ahead:
            packets = self.ahead.take(key)
            if packets is not None:
                self._put_encoded(step, packets)
                continue
            span = _Span(self, step)
            decode_span(self.seg.path, self.video_index, step, span)
        self.from_ahead = []

    def _put_encoded(self, step: Reencode, packets) -> None:
        video = self.output.video
        scale = int(self.video_index.info.time_base / self.plan.unit)
        durations = self.video_index.duration[step.frames] * scale
        for k, data, keyframe in packets:
            item = (video.encoded(data), int(step.pts[k]), int(step.dts[k]), keyframe)
            video.queue.put(step, (*item, int(durations[k])))
        video.queue.complete(step)

    def _framed(self, nals: list[bytes]) -> bytes:
        video = self.output.video
        if getattr(video, "out_avcc", False):
            return b"".join(len(n).to_bytes(video.length_size, "big") + n for n in nals)
        return nal.with_start_codes(nals)

    def run(self) -> None:
        if not self.video_end and not self.audio_end:
            return  # everything goes by byte range: nothing to read here
        try:
            source = av.open(str(self.seg.path), options=DEMUX_OPTIONS)
        except (av.error.FFmpegError, OSError) as error:
            raise ExportError(f"{self.seg.path.name} can no longer be read ({error})") from error
        with source:
            in_v = source.streams.video[0]
            in_a = source.streams.audio[0] if source.streams.audio else None
            for span in self.spans:
                span.open_decoder(in_v)
            streams = [in_v] + ([in_a] if in_a is not None and self.audio_end else [])
            self._read(source, streams, in_v)
        for span in self.spans:
            span.finish()
        if any(self.copies_left.values()):
            raise ExportError(
                f"{self.seg.path.name} ended before all its planned packets were read"
            )

    def _read(self, source, streams, in_v) -> None:
        numbers = {s.index: 0 for s in streams}
        video_n = audio_n = 0
        try:
            for packet in source.demux(streams):
                if packet.size == 0:
                    continue
                is_video = packet.stream.index == in_v.index
                number = numbers[packet.stream.index]
                numbers[packet.stream.index] += 1
                if is_video:
                    video_n = number + 1
                    if number < self.video_end:
                        self._video_packet(number, packet)
                else:
                    audio_n = number + 1
                    if number in self.audio_at:
                        self._audio_packet(number, packet)
                if video_n >= self.video_end and audio_n >= self.audio_end:
                    break
        except av.error.FFmpegError as error:
            if video_n < self.video_end or audio_n < self.audio_end:
                raise ExportError(
                    f"{self.seg.path.name} could not be read where its index says it can ({error})"
                ) from error

    def _check(self, index, number: int, packet) -> None:
        check_packet(self.seg.path, index, number, packet)

    def _video_packet(self, number: int, packet) -> None:
        index = self.video_index
        self._check(index, number, packet)
        # Stamped with the index's (unwrapped) times, so decoded frames are found by pts.
        packet.pts, packet.dts = int(index.pts[number]), int(index.dts[number])
        for span in self.spans:
            span.feed(number, packet)
        hit = self.copy_at.get(number)
        if hit is not None:
            self._copy(number, packet, *hit)
        done = self.seg_plan.out_end - self.seg_plan.out_start
        at = int(index.pts[number] - index.pts.min()) * int(index.info.time_base / self.plan.unit)
        self.progress.tick(
            float((self.seg_plan.out_start + min(at, done)) / max(1, self.plan.duration))
        )

    def _copy(self, number: int, packet, step: Copy, position: int) -> None:
        video = self.output.video
        index = self.video_index
        data = bytes(packet)
        keyframe = index.kind[number] in (1, 2)  # IDR, OPEN
        if video.annexb and index.info.bitstream == "avcc":
            units = nal.nal_units(data, index.info.nal_length_size)
            if keyframe:
                units = nal.parameter_sets(index.info.extradata, self.plan.video_codec) + units
            data = nal.with_start_codes(units)
        elif position == 0 and (step.segment, step.position) in video.prefixed:
            data = self.parameter_sets + data
        duration = int(index.duration[number]) * int(index.info.time_base / self.plan.unit)
        video.queue.put(
            step, (data, int(step.pts[position]), int(step.dts[position]), keyframe, duration)
        )
        self.copies_left[id(step)] -= 1
        if not self.copies_left[id(step)]:
            video.queue.complete(step)

    def _audio_packet(self, number: int, packet) -> None:
        run = self.audio_run
        audio = self.output.audio
        index = self.audio_index
        self._check(index, number, packet)
        k = self.audio_at[number]
        if audio.transcoder is None:
            audio.copy(bytes(packet), index.info.adts, int(run.pts[k]), int(run.duration[k]))
            return
        packet.pts = packet.dts = int(index.pts[number])
        unit = self.plan.unit
        audio.transcoder.add(
            packet.stream,
            packet,
            offset_s=float(run.offset * unit),
            window=(float(run.window[0] * unit), float(run.window[1] * unit)),
        )


def decode_span(path: Path, index, step: Reencode, span: _Span, stop=None) -> None:
    """Feed `span` the video packets of `path` before its decode_to, checked against and
    stamped from `index`, and close it. `stop()` true ends the work between two packets."""
    try:
        source = av.open(str(path), options=DEMUX_OPTIONS)
    except (av.error.FFmpegError, OSError) as error:
        raise ExportError(f"{path.name} can no longer be read ({error})") from error
    with source:
        in_v = source.streams.video[0]
        span.open_decoder(in_v)
        number = 0
        for packet in source.demux(in_v):
            if packet.size == 0:
                continue
            if number >= step.decode_to:
                break
            if stop is not None and stop():
                raise ExportCancelled("stopped")
            check_packet(path, index, number, packet)
            packet.pts, packet.dts = int(index.pts[number]), int(index.dts[number])
            span.feed(number, packet)
            number += 1
    span.finish()


class _Span:
    """One re-encoded span: its own decoder, fed [decode_from, decode_to); wanted pictures go
    to the encoder (the span's own for a smart cut, the file's for a transcode)."""

    def __init__(self, run: SegmentRun, step: Reencode):
        self.run, self.step = run, step
        index = run.video_index
        self.wanted = {int(index.pts[j]): k for k, j in enumerate(step.frames.tolist())}
        scale = int(index.info.time_base / run.plan.unit)
        self.durations = [int(index.duration[j]) * scale for j in step.frames.tolist()]
        self.decoder = None
        self.encoder = None
        self.encoded = 0
        self.closed = False

    def open_decoder(self, in_v) -> None:
        ctx = av.CodecContext.create(in_v.codec_context.name, "r")
        if in_v.codec_context.extradata:
            ctx.extradata = in_v.codec_context.extradata
        ctx.thread_type = "AUTO"
        self.decoder = ctx

    def feed(self, number: int, packet) -> None:
        step = self.step
        if self.closed or not step.decode_from <= number < step.decode_to:
            return
        try:
            frames = self.decoder.decode(packet)
        except av.error.FFmpegError:
            frames = []
        self._frames(frames)
        if number == step.decode_to - 1:
            self._close()

    def _close(self) -> None:
        try:
            self._frames(self.decoder.decode(None))
        except av.error.FFmpegError:
            pass
        self.closed = True
        if self.encoded != len(self.step.frames):
            raise ExportError(
                f"{self.run.seg.path.name}: the plan re-encodes {len(self.step.frames)} frames"
                f" but {self.encoded} decoded"
            )
        if self.encoder is not None and self.encoder.own:
            self.encoder.flush()
        self.run.output.video.queue.complete(self.step)

    def _frames(self, frames) -> None:
        step = self.step
        for frame in frames:
            k = self.wanted.get(frame.pts)
            if k is None:
                continue
            if self.encoder is None:
                video = self.run.output.video
                if video.encoder is not None:
                    self.encoder = video.encoder
                else:
                    self.encoder = video.new_smart_encoder(frame.width, frame.height)
            self.encoder.encode(frame, step, int(step.pts[k]), int(step.dts[k]), self.durations[k])
            self.encoded += 1

    def finish(self) -> None:
        if not self.closed:
            raise ExportError(f"{self.run.seg.path.name} ended before its re-encoded span")
