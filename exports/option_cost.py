"""What a picture option costs, shown in the export form's preview before exporting.

The estimate is frames × (per-frame cost) scaled by picture size: decoding and encoding cost
about in proportion to pixels. The per-frame costs are those `bench/options_bench.py` measured
for 1080p25 H.264 on the 2-core development machine while it was shared with other work
(load average 6-12): decoding 14.6 ms, drawing the overlay and encoding with x264 87.6 ms. A
quiet or bigger machine is faster, so the figure is an upper guide, not a promise.
"""

from __future__ import annotations

from datetime import datetime

DECODE_S_PER_1080P_FRAME = 0.0146
ENCODE_S_PER_1080P_FRAME = 0.0876
PIXELS_1080P = 1920 * 1080
DEFAULT_RATE = 25.0


def reencode_estimate(segments, start: datetime, end: datetime, *, overlay: bool, speed: int | None,
                      still: bool) -> dict | None:
    """{"seconds", "frames", "what"} of the re-encoding the options need over the segments
    inside [start, end), or None when they need none (a plain copy)."""
    if still:
        return {"seconds": None, "frames": 1,
                "what": "decodes one frame (from the keyframe before it): well under a second "
                "per camera at 1080p"}
    if not overlay and not speed:
        return None
    frames = weighted = 0.0  # frames in the range, and the same in 1080p frames
    for segment in segments:
        inside = (min(segment.end, end) - max(segment.start, start)).total_seconds()
        if inside <= 0:
            continue
        count = inside * (segment.frame_rate or DEFAULT_RATE)
        frames += count
        weighted += count * max(1, segment.width * segment.height) / PIXELS_1080P
    seconds = weighted * (DECODE_S_PER_1080P_FRAME + ENCODE_S_PER_1080P_FRAME / (speed or 1))
    if overlay:
        what = "re-encodes every frame to draw the overlay"
    else:
        what = (f"decodes every frame and re-encodes 1 in {speed}, unless each kept frame is a "
                "keyframe (then it copies them: seconds)")
    return {"seconds": round(seconds), "frames": round(frames) // (speed or 1), "what": what}
