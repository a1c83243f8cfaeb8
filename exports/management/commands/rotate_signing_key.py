"""A new Ed25519 key for export manifests; the old public key stays for verification."""

from django.core.management.base import BaseCommand, CommandError

from exports import signing_keys


class Command(BaseCommand):
    help = (
        "Generate a new manifest signing key (the old one is retired: what it signed still "
        "verifies). --revoke KEY_ID marks a retired key revoked: what it signed then fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--revoke", metavar="KEY_ID", help="revoke this retired key")
        parser.add_argument("--reason", default="", help="why it is revoked (shown to verifiers)")

    def handle(self, revoke=None, reason="", **options):
        try:
            if revoke:
                row = signing_keys.revoke(revoke, reason)
                self.stdout.write(f"revoked key {row.key_id} ({row.revoked_reason or 'no reason given'})")
                return
            new, old = signing_keys.rotate()
        except signing_keys.SigningKeyError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"new signing key {new.key_id} (public key {new.public_key})")
        if old is not None:
            self.stdout.write(f"retired key {old.key_id}: what it signed still verifies")
