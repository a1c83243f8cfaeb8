from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from exports.models import Camera


class Command(BaseCommand):
    help = (
        "Allow a user or group (a user of that name first, then a group) to export cameras; "
        "--revoke takes the permission back."
    )

    def add_arguments(self, parser):
        parser.add_argument("principal", metavar="USERNAME_OR_GROUP")
        parser.add_argument("camera_ids", nargs="+", metavar="CAMERA_ID")
        parser.add_argument("--revoke", action="store_true")

    def handle(self, *args, principal, camera_ids, revoke, **options):
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: principal}).first()
        group = None if user else Group.objects.filter(name=principal).first()
        if user is None and group is None:
            raise CommandError(f"no user or group named {principal!r}")
        cameras = list(Camera.objects.filter(camera_id__in=camera_ids))
        unknown = sorted(set(camera_ids) - {c.camera_id for c in cameras})
        if unknown:
            raise CommandError(f"unknown camera: {', '.join(unknown)}")

        for camera in cameras:
            grants = camera.allowed_users if user else camera.allowed_groups
            (grants.remove if revoke else grants.add)(user or group)
        kind = f"user {principal}" if user else f"group {principal}"
        ids = ", ".join(c.camera_id for c in cameras)
        if revoke:
            self.stdout.write(f"Revoked {kind} from camera {ids}")
        else:
            self.stdout.write(f"Granted {kind} camera {ids}")
        if user is not None and user.is_superuser:
            self.stdout.write("(note: superusers may export every camera regardless)")
