import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create DJANGO_SUPERUSER_USERNAME (with DJANGO_SUPERUSER_PASSWORD/EMAIL) if absent; "
        "when none is given and no superuser exists, create 'admin' with a generated password "
        "printed once. Never changes an existing user. Prints who to log in as (`make run` "
        "repeats these lines at the end of its start-up)."
    )

    def handle(self, *args, **options):
        users = get_user_model()
        username = settings.DJANGO_SUPERUSER_USERNAME
        if username:
            if users.objects.filter(username=username).exists():
                self.stdout.write(f"User name: {username} (password unchanged)")
                return
            password = settings.DJANGO_SUPERUSER_PASSWORD
            if not password:
                self._create_with_generated_password(users, username)
                return
            users.objects.create_superuser(
                username, settings.DJANGO_SUPERUSER_EMAIL, password
            )
            self.stdout.write(
                f"User name: {username} (created; password from DJANGO_SUPERUSER_PASSWORD)"
            )
            return
        existing = users.objects.filter(is_superuser=True).order_by("pk").first()
        if existing:
            self.stdout.write(
                f"User name: {existing.get_username()} (password unchanged; "
                f"`python manage.py changepassword {existing.get_username()}` resets it)"
            )
            return
        self._create_with_generated_password(users, "admin")

    def _create_with_generated_password(self, users, username):
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(
            username, settings.DJANGO_SUPERUSER_EMAIL, password
        )
        self.stdout.write(f"User name: {username} (created now)")
        self.stdout.write(f"Password:  {password} (shown once; change it in the admin)")
