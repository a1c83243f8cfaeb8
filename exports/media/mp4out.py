"""The executor's MP4/MOV output: the plan's samples handed to the direct writer (mp4writer).

Copied samples are never read: the frame index of an MP4/MOV source gives each sample's byte
range, which the writer copies in large extents. Samples that must be new bytes (re-encoded
frames, a keyframe that carries its parameter sets in band) are appended to a spool file beside
the output, which is one more source of byte ranges, and removed afterwards.

Used when every segment is MP4/MOV with H.264/HEVC (length-prefixed) or MJPEG video and AAC or
no audio, both copied (`usable`); everything else goes through PyAV's mp4/mov muxer.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import nal
from .errors import ExportCancelled, ExportError
from .executor import InOrder, Progress, SegmentRun, SmartCutVideo
from .frameindex import Kind
from .mp4writer import SPOOL, SampleEntry, TrackTables, WriteCancelled, write_tables
from .plan import Copy, Plan, PlanSegment

MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"


def usable(plan: Plan, segments: list[PlanSegment]) -> bool:
    """True when the direct writer can take this plan (see the module docstring)."""
    if plan.fmt not in ("mp4", "mov") or plan.video_mode != "copy":
        return False
    if plan.audio_mode not in (None, "copy") or plan.audio_codec not in (None, "aac"):
        return False
    for outline in plan.outlines:
        summary = plan.summaries[outline.segment]
        video, audio = summary.video, summary.audio
        if summary.container != MP4_FAMILY or video.codec not in ("h264", "hevc", "mjpeg"):
            return False
        if video.codec != "mjpeg" and video.bitstream != "avcc":
            return False
        if outline.audio_packets is not None and (audio.adts or not audio.extradata):
            return False
    return True


def execute_mp4(
    plan: Plan,
    segments: list[PlanSegment],
    out_path: Path,
    progress: Progress,
    title: str,
    creation,
    ahead=None,
) -> None:
    """Write `plan` to `out_path` with the direct writer (`ahead` as for executor.execute)."""
    spool_path = out_path.with_name(out_path.name + ".spool")
    output = _Mp4Output(plan, segments, spool_path)
    try:
        waiting = []  # runs with spans encoded ahead: taken last, while the work goes on
        for seg_plan in plan.segment_plans(segments):
            progress.check_cancel()
            run = SegmentRun(plan, segments[seg_plan.segment], seg_plan, output, progress, ahead)
            run.run()
            if run.from_ahead:
                waiting.append(run)
        for run in waiting:
            run.take_ahead()
        output.video.finish()
        output.spool.close()
        tracks = output.tracks()
        try:
            write_tables(
                out_path,
                tracks,
                [*output.sources, spool_path],
                brand=plan.fmt,
                creation_time=creation,
                title=title,
                progress=lambda f: progress.tick(0.5 + f / 2),
                cancelled=progress.cancelled,
            )
        except WriteCancelled as error:
            raise ExportCancelled("the export was cancelled") from error
    finally:
        output.close()
        spool_path.unlink(missing_ok=True)


class _Spool:
    """New sample bytes, appended; the writer copies them like any source."""

    def __init__(self, path: Path):
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.size = 0

    def add(self, data: bytes) -> int:
        offset = self.size
        self.file.write(data)
        self.size += len(data)
        return offset

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


class _Entries:
    """Sample entries by content: a segment with other parameter sets gets its own."""

    def __init__(self):
        self.entries: list[SampleEntry] = []

    def index_of(self, entry: SampleEntry) -> int:
        if entry not in self.entries:
            self.entries.append(entry)
        return self.entries.index(entry)


def _colour(info) -> tuple[int, int, int, int] | None:
    values = (info.color_range, info.color_primaries, info.color_trc, info.colorspace)
    return values if any(v not in (0, 2) for v in values[1:]) or values[0] else None


class _Mp4Output:
    """Collects the output's samples (ranges of sources or spooled bytes) for the writer."""

    copies_by_range = True

    def __init__(self, plan: Plan, segments: list[PlanSegment], spool_path: Path):
        self.plan, self.segments = plan, segments
        self.spool_path = spool_path
        self.spool = _Spool(spool_path)
        self.sources: list[Path] = []
        self.source_of: dict[Path, int] = {}
        self.video = _Mp4Video(self, plan, segments)
        self.audio = _Mp4Audio(self, plan) if plan.audio_mode else None
        self.written = {"video": 0, "audio": 0}

    def source(self, path: Path) -> int:
        if path not in self.source_of:
            self.source_of[path] = len(self.sources)
            self.sources.append(path)
        return self.source_of[path]

    def tracks(self) -> list[TrackTables]:
        tracks = [self.video.tables]
        if self.audio is not None and self.audio.tables is not None and self.audio.tables.samples:
            tracks.append(self.audio.track())
        planned = self.plan.frames
        if tracks[0].samples != planned:
            raise ExportError(
                f"the plan has {planned} video frames but {tracks[0].samples} were written"
            )
        return tracks

    def close(self) -> None:
        self.spool.close()
        self.video.tables.close()
        if self.audio is not None and self.audio.tables is not None:
            self.audio.tables.close()


class _Mp4Video(SmartCutVideo):
    """The video track: copy runs as index ranges, re-encoded frames spooled."""

    annexb = False
    nal_codec = True
    out_avcc = True
    encoder = None  # no transcoder: the writer takes stream copies only

    def __init__(self, output: _Mp4Output, plan: Plan, segments: list[PlanSegment]):
        self.output, self.plan = output, plan
        first = segments[plan.outlines[0].segment]
        self.info = first.index.video.info
        self.nal_codec = plan.video_codec in ("h264", "hevc")
        self.length_size = self.info.nal_length_size or 4
        rates = [s.video.frame_rate for s in plan.summaries if s.video is not None]
        self.rate = max((Fraction(r) for r in rates if r), default=plan.frame_rate)
        with av.open(str(first.path)) as source:
            ctx = source.streams.video[0].codec_context
            self.profile, self.level = ctx.profile, getattr(ctx, "level", 0) or 0
        self.encoder_sps_id = 0
        self.queue = InOrder(self)
        self.entries = _Entries()
        folder = output.spool_path.parent
        self.tables = TrackTables("video", int(1 / plan.unit), self.entries.entries, 1, folder)
        self.in_band = plan.video_codec == "hevc" and plan.reencoded_frames > 0
        self.prefixed = self._copies_after_hevc_runs(plan)

    def _copies_after_hevc_runs(self, plan: Plan) -> set[tuple[int, int]]:
        """Copy runs after an x265 run: their first sample re-sends the parameter sets.
        (segment, step position) of each."""
        chosen: set[tuple[int, int]] = set()
        if plan.video_codec != "hevc":
            return chosen
        after_run = False
        for outline in plan.outlines:
            for position, kind in enumerate(outline.steps):
                if kind == "copy" and after_run:
                    chosen.add((outline.segment, position))
                after_run = kind == "reencode"
        return chosen

    def _entry(self, info, extradata: bytes | None = None) -> int:
        return self.entries.index_of(
            SampleEntry(
                codec=info.codec,
                extradata=info.extradata if extradata is None else extradata,
                width=info.width,
                height=info.height,
                color=_colour(info),
                hevc_in_band=self.in_band,
            )
        )

    # -- the queue's writer --

    def write(self, *item) -> None:
        if item[0] == "range":
            self._copy_run(item[1], item[2])
        else:
            self._spooled(*item)

    def _copy_run(self, seg: PlanSegment, step: Copy) -> None:
        index = seg.index.video
        packets = step.packets
        scale = int(index.info.time_base / self.plan.unit)
        entry = self._entry(index.info)
        source = self.output.source(seg.path)
        offsets = index.pos[packets].copy()
        sizes = index.size[packets].copy()
        sources = np.full(len(packets), source)
        if (step.segment, step.position) in self.prefixed and len(packets):
            sets = nal.parameter_sets(index.info.extradata, "hevc")
            prefix = b"".join(len(n).to_bytes(self.length_size, "big") + n for n in sets)
            with open(seg.path, "rb") as file:
                file.seek(int(offsets[0]))
                data = prefix + file.read(int(sizes[0]))
            offsets[0], sizes[0], sources[0] = self.output.spool.add(data), len(data), SPOOL
        self.tables.add(
            dts=step.dts,
            cts=step.pts - step.dts,
            duration=index.duration[packets] * scale,
            sync=(index.kind[packets] == Kind.IDR) | (index.kind[packets] == Kind.OPEN),
            size=sizes,
            source=sources,
            offset=offsets,
            entry=entry,
        )

    def _spooled(self, data: bytes, pts: int, dts: int, keyframe: bool, duration: int) -> None:
        # An x264 run's own SPS/PPS (other ids) travel in band under the copy's sample entry:
        # a sample entry of their own made GStreamer read the run's colour range differently
        # from the copied frames' (a visible contrast jump at the splice).
        entry = self._entry(self.info)
        offset = self.output.spool.add(data)
        self.tables.add(
            dts=dts,
            cts=pts - dts,
            duration=duration,
            sync=keyframe,
            size=len(data),
            source=SPOOL,
            offset=offset,
            entry=entry,
        )

    def encoded(self, data: bytes) -> bytes:
        return nal.annexb_to_avcc(data, self.length_size) if self.nal_codec else data

    def finish(self) -> None:
        self.queue.drain_all()


class _Mp4Audio:
    """The audio track: copied AAC frames as index ranges, on the sample-rate clock."""

    transcoder = None

    def __init__(self, output: _Mp4Output, plan: Plan):
        self.output, self.plan = output, plan
        self.entries = _Entries()
        self.tables: TrackTables | None = None  # made with the first packets: their rate

    def copy_range(self, seg: PlanSegment, run) -> None:
        index = seg.index.audio
        info = index.info
        if self.tables is None:
            folder = self.output.spool_path.parent
            self.tables = TrackTables("audio", info.sample_rate, self.entries.entries, 2, folder)
        to_rate = self.plan.unit * self.tables.timescale  # plan ticks -> samples (exact)
        entry = self.entries.index_of(
            SampleEntry(
                codec="aac",
                extradata=info.extradata,
                sample_rate=info.sample_rate,
                channels=info.channels,
            )
        )
        packets = run.packets
        pts = (run.pts * to_rate.numerator) // to_rate.denominator
        duration = (run.duration * to_rate.numerator) // to_rate.denominator
        self.tables.add(
            dts=pts,
            cts=0,
            duration=duration,
            sync=True,
            size=index.size[packets],
            source=self.output.source(seg.path),
            offset=index.pos[packets],
            entry=entry,
        )

    def track(self) -> TrackTables:
        self.tables.presentation_start = max(0, self.tables.first_dts)
        return self.tables
