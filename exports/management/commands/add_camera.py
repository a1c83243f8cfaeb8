from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from exports.archive import ArchiveError, camera_zone, index_camera, validate_pattern
from exports.models import Camera, validate_camera_id


class Command(BaseCommand):
    help = (
        "Create or update a camera whose recordings are in ARCHIVE_PATH, index them and print "
        "a summary. For Frigate, ARCHIVE_PATH is the recordings root and --source-name "
        "(default: CAMERA_ID) the camera's folder in it."
    )

    def add_arguments(self, parser):
        parser.add_argument("camera_id", help="the CameraId other systems send")
        parser.add_argument("archive_path", help="directory holding the recordings")
        parser.add_argument("--name", help="display name")
        parser.add_argument("--source-name", help="the camera's folder name in a shared layout")
        parser.add_argument("--layout", choices=[c.value for c in Camera.Layout])
        parser.add_argument(
            "--pattern", help="strftime path relative to ARCHIVE_PATH (implies --layout pattern)"
        )
        parser.add_argument("--timezone", help="IANA zone of the times in file names (default UTC)")

    def handle(self, *args, camera_id, archive_path, **options):
        path = Path(archive_path).expanduser()
        if not path.is_dir():
            raise CommandError(f"{archive_path}: no such directory")
        camera = Camera.objects.filter(camera_id=camera_id).first() or Camera(camera_id=camera_id)
        created = camera.pk is None
        if created:
            try:
                validate_camera_id(camera_id)
            except ValidationError as error:
                raise CommandError(error.messages[0]) from None
        camera.archive_path = str(path.resolve())
        for option, attribute in (
            ("name", "name"), ("source_name", "source_name"), ("layout", "layout"),
            ("pattern", "pattern"), ("timezone", "timezone"),
        ):
            if options.get(option) is not None:
                setattr(camera, attribute, options[option])
        if options.get("pattern") and not options.get("layout"):
            camera.layout = Camera.Layout.PATTERN
        self._validate(camera)
        camera.save()

        try:
            summary = index_camera(camera)
        except ArchiveError as error:
            raise CommandError(str(error)) from None
        verb = "added" if created else "updated"
        self.stdout.write(f"Camera {camera.camera_id} {verb} ({camera.archive_path})")
        self.stdout.write(str(summary))
        for failed in summary.failed[:10]:
            self.stderr.write(f"  unreadable: {failed}")
        if not summary.segments:
            self.stderr.write("  warning: no recordings found; check the path and --layout")

    def _validate(self, camera):
        try:
            camera_zone(camera)
            if camera.layout == Camera.Layout.PATTERN:
                if not camera.pattern:
                    raise ArchiveError("--layout pattern needs --pattern")
                validate_pattern(camera.pattern)
        except ArchiveError as error:
            raise CommandError(str(error)) from None
        if len(camera.camera_id) > Camera._meta.get_field("camera_id").max_length:
            raise CommandError("camera id is too long (64 characters at most)")
