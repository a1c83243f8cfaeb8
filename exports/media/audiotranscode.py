"""Audio transcoding for an export: decoded audio trimmed to the kept video, encoded as AAC."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np


class AudioTranscoder:
    """Decodes kept audio, trims it to the video window exactly, and encodes AAC."""

    def __init__(self, output, stream, rate: int, layout: str):
        self.output, self.stream = output, stream
        self.rate, self.layout = rate, layout
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self.channels = 1 if layout == "mono" else 2
        self.buffer = np.zeros((self.channels, 0), dtype=np.float32)
        self.buffer_pos = None  # output sample index of buffer[:, 0]
        self.frame_size = 1024

    def add(self, in_stream, packet, offset_s: float, window: tuple[float, float]) -> None:
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

    def _place(self, samples, file_start: float, offset_s: float, window) -> None:
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

    def _encode_full_frames(self, final: bool = False) -> None:
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
                self.output.mux(packet, "audio")

    def flush(self) -> None:
        if self.buffer_pos is not None:
            self._encode_full_frames(final=True)
        for packet in self.stream.encode(None):
            self.output.mux(packet, "audio")
