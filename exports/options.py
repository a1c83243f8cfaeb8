"""Export options that change what a job writes (issue 13): parts and mosaics.

The job asks here where its file goes and whether the task is one of these; `run` answers
None for a plain task, which then takes the engine's usual path.
"""

from pathlib import Path

from exports import groups, parts


def output_path(task, out_path: Path) -> Path:
    """Where the run writes its (first) file."""
    out_path = Path(out_path)
    if task.mosaic:
        return out_path.with_name(groups.mosaic_file_name(task))
    return parts.first_part_path(task, out_path)


def run(task, out_path: Path, reporter):
    """The result of a mosaic or a task in parts, None for a plain task."""
    if task.mosaic:
        return groups.export_mosaic(task, out_path, reporter)
    if parts.wanted(task):  # MaxFileSize, or longer than one part: one file per part
        return parts.export_in_parts(task, out_path, reporter)
    return None


finish_fields = parts.finish_fields
publish = parts.publish
