"""Export a camera's range to a file in the foreground, with the worker's own code path."""

import json
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from exports import jobs
from exports.archive import ArchiveError, index_camera, last_recorded_frame
from exports.forms import ALL_FORMATS, STILL_FORMATS, parse_psim_time
from exports.lease import Lease
from exports.media.options import MAX_SPEED, MIN_SPEED, STILL_WINDOW
from exports.media.overlay import POSITIONS, ZONES
from exports.models import AuditEvent, Camera, ExportTask
from exports.tasks import record_audit


class Command(BaseCommand):
    help = "Export CAMERA_ID from FROM to TO (default: the last recorded frame) into --output."
    # The system checks import every URL, view and admin module (about a second): they are
    # for `migrate`/`runserver`, not for an export that uses none of them.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("camera_id")
        parser.add_argument("start", metavar="FROM", help="UTC time, e.g. 2026-11-20T10:00:00Z")
        parser.add_argument("end", metavar="TO", nargs="?", help="default: last recorded frame")
        parser.add_argument(
            "--format", dest="fmt", help="mp4, avi, flv, mov, asf or mkv; jpg or png: a still of FROM"
        )
        parser.add_argument(
            "--overlay", nargs="?", const="top-left", choices=POSITIONS, metavar="CORNER",
            help=f"draw camera name and time into the picture ({', '.join(POSITIONS)})",
        )
        parser.add_argument("--overlay-zone", choices=ZONES, default="camera")
        parser.add_argument("--overlay-ms", action="store_true", help="time to the millisecond")
        parser.add_argument("--speed", type=int, help=f"timelapse, {MIN_SPEED}-{MAX_SPEED} times faster")
        parser.add_argument("--output", required=True, help="file to write")
        parser.add_argument("--force", action="store_true", help="overwrite an existing file")

    def handle(self, camera_id, start, end, fmt, output, force, **options):
        picture = self._picture_options(options)
        camera = Camera.objects.filter(camera_id=camera_id).first()
        if camera is None:
            raise CommandError(f"no such camera {camera_id!r}")
        start, end = self._parse_times(start, end)
        fmt = self._format(fmt, Path(output))
        out_path = Path(output).expanduser().resolve()
        if not out_path.parent.is_dir():
            raise CommandError(f"folder {out_path.parent} does not exist")
        if out_path.exists() and not force:
            raise CommandError(f"{out_path} exists; use --force to overwrite it")
        try:
            index_camera(camera, recent_only=True)
        except ArchiveError as error:
            self.stderr.write(f"warning: cannot refresh the index: {error}")
        if fmt in STILL_FORMATS:
            if picture.get("speed"):
                raise CommandError("--speed does not apply to a still")
            end = start + STILL_WINDOW
        end = end or last_recorded_frame(camera)
        if end is None or end <= start:
            raise CommandError(f"camera {camera_id} has no recording after {start:%Y-%m-%d %H:%M:%S}Z")

        task = self._claimed_task(camera, start, end, fmt, picture)
        began = time.monotonic()
        try:
            # The lease tells maintenance this task is not stuck while the command runs.
            with Lease(task.id, task.attempt_id):
                result = jobs.execute_task(
                    task, out_path, self._progress_bar(), keep_in_exports=False
                )
        except KeyboardInterrupt:
            jobs._fail(task, out_path, False, "interrupted on the command line")
            raise CommandError("interrupted; no file written") from None
        finally:
            if sys.stderr.isatty():
                sys.stderr.write("\n")
        task.refresh_from_db()
        if result is None:
            raise CommandError(task.error_message or f"export ended {task.state}")
        summary = {
            "frames": result.frames,
            "duration_s": round(result.duration_s, 3),
            "bytes": result.bytes,
            "technique": result.technique,
            "gaps": task.gaps,
            "seconds": round(time.monotonic() - began, 3),
            "output": str(out_path),
            "sha256": task.sha256,
            "task": str(task.id),
        }
        if task.parts:  # a range longer than one part: the files beside --output, in order
            summary["output"] = str(out_path.with_name(task.parts[0]["file"]))
            summary["bytes"] = task.size
            summary["parts"] = [str(out_path.with_name(part["file"])) for part in task.parts]
        self.stdout.write(json.dumps(summary))

    def _parse_times(self, start, end):
        try:
            start = parse_psim_time(start)
            end = parse_psim_time(end) if end else None
        except ValueError as error:
            raise CommandError(str(error)) from None
        if end is not None and end <= start:
            raise CommandError("TO must be after FROM")
        return start, end

    def _format(self, fmt, output: Path) -> str:
        fmt = (fmt or output.suffix.lstrip(".") or settings.PSIMEXPORT_CONTAINER_FORMAT).lower()
        fmt = "jpg" if fmt == "jpeg" else fmt
        if fmt not in ALL_FORMATS:
            raise CommandError(f"unknown format {fmt!r}; choose one of {', '.join(ALL_FORMATS)}")
        return fmt

    def _picture_options(self, options) -> dict:
        """ExportTask fields of --overlay… and --speed (exports/option_fields.py)."""
        speed = options["speed"]
        if speed is not None and not MIN_SPEED <= speed <= MAX_SPEED:
            raise CommandError(f"--speed {speed} is not from {MIN_SPEED} to {MAX_SPEED}")
        if not options["overlay"]:
            return {"speed": speed}
        return {
            "overlay": True, "overlay_position": options["overlay"],
            "overlay_zone": options["overlay_zone"], "overlay_ms": options["overlay_ms"],
            "speed": speed,
        }

    def _claimed_task(self, camera, start, end, fmt, picture):
        """A task row for the audit trail, already InProgress: no queue is involved."""
        task = ExportTask.objects.create(
            camera=camera, requested_from=start, requested_to=end, start=start, end=end,
            format=fmt, source=ExportTask.Source.COMMAND, state=ExportTask.State.IN_PROGRESS,
            started_at=timezone.now(), attempts=1, attempt_id=uuid.uuid4(), **picture,
        )
        record_audit(task, AuditEvent.Action.CREATE, source="command")
        record_audit(task, AuditEvent.Action.START, attempt=1)
        return task

    def _progress_bar(self):
        if not sys.stderr.isatty():
            return None

        def show(fraction):
            filled = int(fraction * 30)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {int(fraction * 100):3d}%")
            sys.stderr.flush()

        return show
