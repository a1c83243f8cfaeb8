"""The media engine: PyAV only, no Django. See engine.export()."""

from .engine import (
    FORMATS,
    ExportCancelled,
    ExportError,
    ExportResult,
    NoRecordingError,
    SourceSegment,
    export,
)

__all__ = [
    "FORMATS",
    "ExportCancelled",
    "ExportError",
    "ExportResult",
    "NoRecordingError",
    "SourceSegment",
    "export",
]
