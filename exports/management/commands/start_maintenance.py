"""Queue the periodic housekeeping (expiry, stuck-task recovery, re-indexing) once.

`make run` calls this at start; the job then re-schedules itself every minute through rq's
scheduler. Running it again while a round is pending does nothing.
"""

from django.core.management.base import BaseCommand, CommandError
from redis import RedisError

from exports.maintenance import schedule_maintenance


class Command(BaseCommand):
    help = "Queue the periodic maintenance job (idempotent)."

    def handle(self, **options):
        try:
            job = schedule_maintenance()
        except RedisError as error:
            raise CommandError(f"cannot reach Redis: {error}") from None
        status = job.get_status(refresh=False)
        self.stdout.write(f"maintenance job {job.id} {getattr(status, 'value', status)}")
