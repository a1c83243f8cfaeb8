"""The media engine: PyAV only, no Django. See engine.export().

The engine's names are loaded on first use (PEP 562), so importing one light module of the
package (e.g. `exports.media.probe` for the archive indexer) does not load the engine, numpy
and the writers: a management command that does not export starts faster.
"""

import importlib

__all__ = [
    "FORMATS",
    "ExportCancelled",
    "ExportError",
    "ExportResult",
    "NoRecordingError",
    "SourceSegment",
    "export",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".engine", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
