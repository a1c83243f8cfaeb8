"""Issue an API key for an existing user; prints only the key (it is stored hashed)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from exports.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print the key (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label for the token, e.g. 'PSIM server'")

    def handle(self, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        _, key = ApiToken.issue(user, name=name or "command line")
        self.stdout.write(key)
