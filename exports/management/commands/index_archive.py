from django.core.management.base import BaseCommand, CommandError

from exports.archive import ArchiveError, index_camera
from exports.models import Camera


class Command(BaseCommand):
    help = "Re-index the archives of the given cameras (default: all enabled), incrementally."

    def add_arguments(self, parser):
        parser.add_argument("camera_ids", nargs="*", metavar="CAMERA_ID")

    def handle(self, *args, camera_ids, **options):
        if camera_ids:
            cameras = list(Camera.objects.filter(camera_id__in=camera_ids))
            unknown = sorted(set(camera_ids) - {c.camera_id for c in cameras})
            if unknown:
                raise CommandError(f"unknown camera: {', '.join(unknown)}")
        else:
            cameras = list(Camera.objects.filter(enabled=True))
            if not cameras:
                self.stdout.write("No enabled cameras.")
        broken = []
        for camera in cameras:
            try:
                summary = index_camera(camera)
            except ArchiveError as error:
                self.stderr.write(f"camera {camera.camera_id}: {error}")
                broken.append(camera.camera_id)
                continue
            self.stdout.write(str(summary))
            for failed in summary.failed[:10]:
                self.stderr.write(f"  unreadable: {failed}")
        if broken:
            raise CommandError(f"could not index: {', '.join(broken)}")
