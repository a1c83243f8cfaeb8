"""A process that appends audit events, for the chain's concurrency test:
`python -m tests.audit_writer NAME COUNT GATE`.

It waits until the file GATE exists (so every writer starts at once), then appends COUNT
events, every third one inside a transaction that also changes a task row (as the
services do), and exits 0.
"""

import os
import sys
import time
from pathlib import Path


def main(name: str, count: int, gate: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
    import django

    django.setup()
    from django.db import transaction

    from exports.models import AuditEvent, ExportTask
    from exports.tasks import record_audit, sqlite_write_turn

    task = ExportTask.objects.select_related("camera").get()
    Path(f"{gate}.{name}.ready").touch()
    while not gate.exists():
        time.sleep(0.005)
    for index in range(count):
        if index % 3 == 2:
            with sqlite_write_turn(), transaction.atomic():
                ExportTask.objects.filter(id=task.id).update(percents=index % 100)
                record_audit(task, AuditEvent.Action.VIEW, writer=name, index=index)
        else:
            record_audit(task, AuditEvent.Action.VIEW, writer=name, index=index)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
