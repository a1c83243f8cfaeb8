"""Exports with picture options: a still, a burned-in overlay, a timelapse. No Django.

`export_with_options` is the engine entry the job calls when a task has one of these options;
plain exports go through `engine.export` untouched. It uses the same frame indexes and the same
plan (`plan.make_plan`, so the same frames are chosen), then reshapes the plan:

- **overlay**: every planned frame is decoded, labelled (`overlay.draw`) and encoded again
  (H.264, the file's transcoder); audio stays as planned (copied, in sync). Technique
  `overlay_transcode`.
- **timelapse** (`speed` N, 2-1000): of the planned frames in output order, every N-th is kept
  and shown at 1/N of its time from the first kept frame; audio is dropped. When the N-th
  frames, counted from the first IDR frame within the first N, are all IDR frames (short GOPs,
  N a multiple of the GOP) they are stream-copied without decoding (`timelapse_keyframes`),
  else every frame is decoded and the kept ones encoded (`timelapse_transcode`).
- **still** (format jpg/png): see `stills`.

The reshaped plan is carried out by the executor (`executor._Output`, `SegmentRun`); an overlay
swaps in an encoder that draws on each frame first.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from . import executor, overlay, stills
from .engine import ExportResult, SourceSegment, _indexed, _result
from .errors import ExportError, NoRecordingError
from .frameindex import Kind, SegmentIndex, build_index
from .plan import Copy, Plan, PlanSegment, Reencode, SegmentPlan, make_plan

MIN_SPEED, MAX_SPEED = 2, 1000
STILL_WINDOW = timedelta(milliseconds=1)  # a still is the first frame of [From, From + 1 ms)
KEPT_LISTED = 500  # a timelapse lists its kept frames' times up to this many


@dataclass(frozen=True)
class PictureOptions:
    """The options of one export that change its pictures."""

    camera_id: str = ""
    camera_name: str = ""
    zone: str | None = None  # the camera's IANA zone (stills' local time); None: UTC
    overlay: overlay.OverlaySpec | None = None
    speed: int = 1

    def __post_init__(self):
        if self.speed != 1 and not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise ExportError(f"speed {self.speed} is outside {MIN_SPEED}-{MAX_SPEED}")


@dataclass
class OptionResult(ExportResult):
    """An ExportResult with what the options did (`options` goes into the task's details)."""

    options: dict = dataclasses.field(default_factory=dict)
    decoded_frames: int = 0  # pictures decoded (the work an option costs)
    encoded_frames: int = 0

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update(options=self.options, decoded_frames=self.decoded_frames,
                   encoded_frames=self.encoded_frames)
        return out


def export_with_options(
    segments: list[SourceSegment],
    start: datetime,
    end: datetime,
    fmt: str,
    out_path: Path,
    options: PictureOptions,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    title: str | None = None,
    *,
    index_for: Callable[[Path], SegmentIndex] | None = None,
) -> OptionResult:
    """Like `engine.export`, with `options` applied; `fmt` jpg/png writes a still of `start`.

    Same guarantees: written under a temporary name and renamed when complete, removed on any
    error or cancel; progress never goes backwards; cancel is noticed within a second.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ExportError("start and end must be timezone-aware")
    still = fmt in stills.FORMATS
    if still:
        end = start + STILL_WINDOW
        if options.speed != 1:
            raise ExportError("a still has no speed")
    elif end <= start:
        raise ExportError("the end of the range must be after its start")
    out_path = Path(out_path)
    chosen = sorted((s for s in segments if s.end > start and s.start < end), key=lambda s: s.start)
    if not chosen:
        raise NoRecordingError(f"nothing is recorded between {start} and {end}")
    ticker = executor.Progress(progress, cancelled)
    ticker.tick(0.0)
    indexed, skipped = _indexed(chosen, index_for or build_index, ticker)
    if not indexed:
        raise NoRecordingError("no readable recording in the requested range")
    plan = make_plan(indexed, start, end, "mkv" if still else fmt)
    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    try:
        if still:
            result = _still(plan, indexed, fmt, tmp_path, options)
        else:
            result = _video(plan, indexed, tmp_path, ticker, options, title, start, end, chosen)
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    result.skipped = skipped + result.skipped
    result.bytes = out_path.stat().st_size
    if progress is not None:
        progress(1.0)
    return result


# -- stills ------------------------------------------------------------------------------------


def _still(plan: Plan, indexed, fmt, tmp_path, options: PictureOptions) -> OptionResult:
    seg_plan = plan.segments[0]
    packets, _, decode_from = planned_frames(seg_plan)
    segment = indexed[seg_plan.segment]
    frame = stills.decode_frame(segment, int(packets[0]), decode_from)
    wall = seg_plan.first_frame
    if options.overlay is not None:
        frame = overlay.draw(frame, options.overlay, wall)
    meta = stills.StillMetadata(options.camera_id, options.camera_name, wall, options.zone)
    stills.write_still(frame, fmt, tmp_path, meta)
    result = OptionResult(
        frames=1, technique="still", first_frame=wall, last_frame=wall,
        decoded_frames=int(packets[0]) - decode_from + 1, encoded_frames=1,
        gaps=[], skipped=list(plan.skipped),
    )
    result.options = {"still": {"format": fmt, "frame": stills.iso_millis(wall),
                                "width": frame.width, "height": frame.height,
                                "overlay": options.overlay is not None}}
    return result


# -- video: overlay and timelapse --------------------------------------------------------------


def planned_frames(seg_plan: SegmentPlan):
    """(packets, output pts) of a planned segment in presentation order, and the packet its
    decoding must start from."""
    steps = [s for s in seg_plan.video if len(s.pts)]
    packets = np.concatenate([s.frames if isinstance(s, Reencode) else s.packets for s in steps])
    pts = np.concatenate([s.pts for s in steps])
    starts = [s.decode_from if isinstance(s, Reencode) else int(s.packets.min()) for s in steps]
    order = np.argsort(pts, kind="stable")
    return packets[order], pts[order], min(starts)


@dataclass
class _Selection:
    """The frames a reshaped plan keeps: per planned segment, positions into its frames."""

    mode: str  # transcode | keyframes
    positions: list[np.ndarray]
    anchor: int = 0  # position (whole file) of the first kept frame


def select_timelapse(plan: Plan, indexed: list[PlanSegment], speed: int, copy_ok: bool):
    """Every `speed`-th planned frame: from the first IDR frame (if within the first `speed`
    and every pick is an IDR frame, and copying is allowed), else from the first frame."""
    frames = [planned_frames(s) for s in plan.segments]
    is_idr = np.concatenate(
        [indexed[s.segment].index.video.kind[f[0]] == Kind.IDR for s, f in zip(plan.segments, frames, strict=True)]
    )
    total = len(is_idr)
    mode, anchor = "transcode", 0
    first_idr = int(np.argmax(is_idr)) if is_idr.any() else total
    if copy_ok and first_idr < speed and is_idr[first_idr::speed].all():
        mode, anchor = "keyframes", first_idr
    picks = np.zeros(total, dtype=bool)
    picks[anchor::speed] = True
    return _Selection(mode, _split(picks, [len(f[0]) for f in frames]), anchor)


def _split(mask: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [np.flatnonzero(mask[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def reshape(plan: Plan, indexed, selection: _Selection, speed: int, keep_audio: bool, why: str):
    """The plan with only the selected frames, each at (output time - first kept) / speed,
    copied (keyframes) or re-encoded as one span per segment; and the kept frames' recorded
    times (None when more than KEPT_LISTED)."""
    parts = []
    for seg_plan, positions in zip(plan.segments, selection.positions, strict=True):
        packets, pts, decode_from = planned_frames(seg_plan)
        parts.append((seg_plan, packets[positions], pts[positions], decode_from))
    every = np.concatenate([p[2] for p in parts])
    origin = int(every[0]) if speed != 1 else 0
    out = _divided(every - origin, speed)
    segments, at = [], 0
    for seg_plan, packets, pts, decode_from in parts:
        if not len(packets):
            continue
        seg_out = out[at : at + len(packets)]
        at += len(packets)
        video = indexed[seg_plan.segment].index.video
        scale = int(video.info.time_base / plan.unit)
        if selection.mode == "keyframes":
            step = Copy(seg_plan.segment, packets, seg_out, seg_out.copy(), np.empty(0, np.int64))
        else:
            step = Reencode(seg_plan.segment, decode_from, int(packets.max()) + 1, packets,
                            seg_out, seg_out.copy(), why)
        segments.append(
            dataclasses.replace(
                seg_plan,
                video=[step],
                audio=seg_plan.audio if keep_audio else None,
                frames=len(packets),
                first_frame=_wall(seg_plan, plan, int(pts[0])),
                last_frame=_wall(seg_plan, plan, int(pts[-1])),
                out_start=int(seg_out[0]),
                out_end=int(seg_out[-1]) + int(video.duration[packets[-1]]) * scale,
            )
        )
    kept = None
    if len(every) <= KEPT_LISTED:
        kept = [_wall(p[0], plan, int(t)) for p in parts for t in p[2]]
    reshaped = dataclasses.replace(
        plan,
        video_mode="copy" if selection.mode == "keyframes" else "transcode",
        audio_mode=plan.audio_mode if keep_audio else None,
        segments=segments,
        outlines=[seg.outline() for seg in segments],  # what frames/duration are counted from
        delay=0,
    )
    return reshaped, kept


def _divided(ticks: np.ndarray, speed: int) -> np.ndarray:
    """ticks / speed rounded half up, kept strictly increasing."""
    out = (2 * ticks + speed) // (2 * speed)
    for i in np.flatnonzero(np.diff(out) <= 0) + 1:  # only variable frame rates get here
        out[i] = max(out[i], out[i - 1] + 1)
    return out


def _wall(seg_plan: SegmentPlan, plan: Plan, out_pts: int) -> datetime:
    return seg_plan.first_frame + timedelta(seconds=float((out_pts - seg_plan.out_start) * plan.unit))


def _video(plan, indexed, tmp_path, ticker, options: PictureOptions, title, start, end, chosen):
    speed = options.speed
    drawing = options.overlay is not None
    if speed == 1 and not drawing:
        raise ExportError("no picture option given: use engine.export")
    if speed == 1:
        selection = _Selection("transcode", [np.arange(s.frames) for s in plan.segments])
    else:
        selection = select_timelapse(plan, indexed, speed, plan.video_mode == "copy" and not drawing)
    why = "overlay drawn into the picture" if drawing else f"timelapse at {speed}x"
    reshaped, kept = reshape(plan, indexed, selection, speed, keep_audio=speed == 1, why=why)
    title = title or (
        f"recording from {start.astimezone(UTC):%Y-%m-%d %H:%M:%S} "
        f"to {end.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    creation = max(chosen[0].start, start)
    _run(reshaped, indexed, tmp_path, ticker, title, creation, options.overlay)
    result = OptionResult(**vars(_result(reshaped, [])))
    names = (["timelapse"] if speed != 1 else []) + (["overlay"] if drawing else [])
    result.technique = "_".join(names + ["keyframes" if selection.mode == "keyframes" else "transcode"])
    result.encoded_frames = 0 if selection.mode == "keyframes" else reshaped.frames
    result.decoded_frames = 0 if selection.mode == "keyframes" else sum(
        int(s.video[0].decode_to - s.video[0].decode_from) for s in reshaped.segments
    )
    result.options = _described(options, selection, reshaped, plan, kept)
    return result


def _described(options: PictureOptions, selection: _Selection, reshaped: Plan, plan: Plan,
               kept: list[datetime] | None) -> dict:
    described = {}
    if options.overlay is not None:
        spec = options.overlay
        described["overlay"] = {"position": spec.position, "zone": spec.zone or "UTC",
                                "milliseconds": spec.milliseconds}
    if options.speed != 1:
        described["timelapse"] = {
            "speed": options.speed,
            "mode": selection.mode,
            "rule": f"1 in {options.speed} of the {plan.frames} recorded frames in the range, "
            f"from frame {selection.anchor} (counting from 0)",
            "kept_frames": reshaped.frames,
            "first_kept": stills.iso_millis(reshaped.first_frame),
            "last_kept": stills.iso_millis(reshaped.last_frame),
            "kept": [stills.iso_millis(w) for w in kept] if kept is not None else None,
            "audio": "dropped",
        }
    return described


class _DrawingEncoder(executor.Encoder):
    """The file's transcoder, drawing the overlay on each frame before encoding it."""

    def __init__(self, video, spec: overlay.OverlaySpec, walls: Callable):
        super().__init__(video, video.stream.codec_context, own=False)
        self.spec, self.walls = spec, walls

    def encode(self, frame, step, pts, dts, duration) -> None:
        super().encode(overlay.draw(frame, self.spec, self.walls(step, frame.pts)), step, pts, dts,
                       duration)


def _run(plan: Plan, indexed, out_path, ticker, title, creation, spec) -> None:
    """`executor.execute`, with the drawing encoder when there is an overlay."""
    output = executor._Output(plan, indexed, out_path, title, creation)
    if spec is not None:

        def wall(step, source_pts):
            segment = indexed[step.segment]
            video = segment.index.video
            return segment.wall_start + _exact(int(source_pts) - int(video.pts.min()), video.info.time_base)

        output.video.encoder = _DrawingEncoder(output.video, spec, wall)
    try:
        for seg_plan in plan.segments:
            ticker.check_cancel()
            executor.SegmentRun(plan, indexed[seg_plan.segment], seg_plan, output, ticker).run()
        output.finish()
    finally:
        output.close()


def _exact(ticks: int, time_base) -> timedelta:
    """ticks × time_base as a timedelta, rounded to the microsecond (no float drift)."""
    micro = ticks * time_base * 1_000_000
    return timedelta(microseconds=round(micro))
