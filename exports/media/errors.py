"""The engine's exceptions, shared by the planner, the executor and the facade."""


class ExportError(Exception):
    """An export failed; the message is meant for an operator."""


class NoRecordingError(ExportError):
    """Nothing is recorded in the requested range."""


class ExportCancelled(ExportError):
    """The export was cancelled by the caller."""
