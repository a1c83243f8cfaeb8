from django.core.management.base import BaseCommand, CommandError

from exports import audit_chain


class Command(BaseCommand):
    help = (
        "Walk the audit trail's hash chain from its first event; name the first broken link "
        "(exit 1). The result is kept for the admin to show."
    )

    def handle(self, *args, **options):
        report = audit_chain.check_and_record()
        if not report.ok:
            raise CommandError(
                f"audit chain broken after {report.events} good events: {report.message}"
            )
        head = f"; head {report.head_hash}" if report.events else ""
        self.stdout.write(f"The audit chain holds: {report.events} events{head}")
