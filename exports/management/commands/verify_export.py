"""Check an evidence package, or a video and its manifest, against this server's keys."""

from pathlib import Path

from django.core.management.base import BaseCommand

from exports import evidence_check


class Command(BaseCommand):
    help = (
        "Verify an evidence package (zip or extracted folder), or VIDEO MANIFEST.json (the "
        "signature beside the manifest). Prints the verdict; exit 0 only when everything holds."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("manifest", type=Path, nargs="?")
        parser.add_argument(
            "--password-file", type=Path,
            help="file holding the package's password (AES-encrypted packages)",
        )

    def handle(self, path, manifest=None, password_file=None, **options):
        password = password_file.read_text().strip() if password_file else None
        ok, lines = evidence_check.check_path(path, manifest, password)
        self.stdout.write("\n".join(lines))
        if not ok:
            raise SystemExit(1)
