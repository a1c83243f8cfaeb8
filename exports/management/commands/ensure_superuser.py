import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create DJANGO_SUPERUSER_USERNAME (with DJANGO_SUPERUSER_PASSWORD/EMAIL) if absent; "
        "when none is given and no superuser exists, create 'admin' with a generated password "
        "printed once. Never changes an existing user."
    )

    def handle(self, *args, **options):
        users = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
        if username:
            if users.objects.filter(username=username).exists():
                return
            password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
            if not password:
                password = secrets.token_urlsafe(12)
                self.stdout.write(f"Created superuser {username!r} with password {password}")
            else:
                self.stdout.write(f"Created superuser {username!r}")
            users.objects.create_superuser(
                username, os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password
            )
            return
        if users.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "", password)
        self.stdout.write(
            f"Created superuser 'admin' with password {password} (shown once; "
            "change it in the admin)"
        )
