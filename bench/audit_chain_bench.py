"""What the audit trail's hash chain costs (issue 12): appending an event, and checking it.

    .venv/bin/python bench/audit_chain_bench.py [--events 2000] [--writers 4]
    DATABASE_URL=postgres://user@host/db .venv/bin/python bench/audit_chain_bench.py

Runs on a throw-away database: a fresh SQLite file in a temporary data dir, or the
PostgreSQL database DATABASE_URL names (its audit tables are emptied first, so never point
it at a database you keep). Prints, per event (median of 3 rounds):
- "plain insert": the same row written without the chain (bulk_create, one row, autocommit),
  the baseline measured in the same run;
- "chained append": AuditEvent.save (head row locked, hash, insert, head updated), autocommit;
- both again with 100 events per transaction (commit cost shared: what the chain itself adds);
- N writer processes at once, plain inserts then chained appends: total events/s (the
  chain's lock serialises appends);
- verify_chain: events checked per second.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def setup_django(data_dir: str) -> None:
    os.environ.setdefault("PSIMEXPORT_DATA", data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fresh():
    from exports.models import AuditChainHead, AuditEvent

    AuditEvent.objects.all().delete()
    AuditChainHead.objects.all().delete()


def event(index: int):
    from exports.models import AuditEvent

    return AuditEvent(
        task_id="084b56a5-bd49-4327-82db-9bc911f7ff96", camera_id="1", action="download",
        username="alice", remote_addr="192.0.2.7",
        detail={"via": "credentials", "range": "", "index": index},
    )


def per_event_us(write, count: int) -> float:
    started = time.perf_counter()
    write(count)
    return (time.perf_counter() - started) / count * 1e6


def plain(count):
    from exports.models import AuditEvent

    for i in range(count):
        AuditEvent.objects.bulk_create([event(i)])


def chained(count):
    for i in range(count):
        event(i).save()


def in_transactions(write_one):
    def write(count):
        from django.db import transaction

        from exports.tasks import sqlite_write_turn

        for start in range(0, count, 100):
            with sqlite_write_turn(), transaction.atomic():
                for i in range(start, min(count, start + 100)):
                    write_one(i)

    return write


def plain_one(i):
    from exports.models import AuditEvent

    AuditEvent.objects.bulk_create([event(i)])


def chained_one(i):
    event(i).save()


WRITER = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psimexport.settings")
sys.path.insert(0, {base!r})
import django; django.setup()
from exports.models import AuditEvent
gate = {gate!r}
while not os.path.exists(gate):
    time.sleep(0.002)
for i in range({count}):
    event = AuditEvent(task_id=None, camera_id="1", action="view", username="w", detail={{"i": i}})
    if {chained}:
        event.save()
    else:
        AuditEvent.objects.bulk_create([event])
"""


def concurrent(writers: int, count: int, tmp: Path, chained: bool) -> float:
    gate = tmp / f"gate-{time.monotonic_ns()}"
    code = WRITER.format(base=str(BASE_DIR), gate=str(gate), count=count, chained=chained)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=os.environ) for _ in range(writers)]
    time.sleep(3)  # let them import Django; the timing starts at the gate
    started = time.perf_counter()
    gate.touch()
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit("a writer failed")
    return writers * count / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    setup_django(str(tmp))
    from django.db import connection

    from exports import audit_chain

    print(f"database: {connection.vendor}; {args.events} events per measure; load {os.getloadavg()}")
    rounds = {
        "plain insert": [], "chained append": [],
        "plain, 100 per transaction": [], "chained, 100 per transaction": [],
    }
    writers = (plain, chained, in_transactions(plain_one), in_transactions(chained_one))
    for _ in range(3):
        for name, write in zip(rounds, writers, strict=True):
            fresh()
            rounds[name].append(per_event_us(write, args.events))
    for name, figures in rounds.items():
        print(f"{name:32s} {statistics.median(figures):8.0f} µs/event  (rounds: "
              + ", ".join(f"{f:.0f}" for f in figures) + ")")
    median = {name: statistics.median(figures) for name, figures in rounds.items()}
    print(f"chain overhead per event, autocommit: {median['chained append'] - median['plain insert']:.0f} µs;"
          f" in a transaction: {median['chained, 100 per transaction'] - median['plain, 100 per transaction']:.0f} µs")

    for chained_writes in (False, True):
        fresh()
        rate = concurrent(args.writers, args.events // args.writers, tmp, chained_writes)
        kind = "chained appends" if chained_writes else "plain inserts"
        print(f"{args.writers} writer processes at once, {kind}: {rate:.0f} events/s in total")
    started = time.perf_counter()
    report = audit_chain.verify_chain()
    seconds = time.perf_counter() - started
    assert report.ok, report.message
    print(f"verify_chain: {report.events} events in {seconds:.2f} s ({report.events / seconds:.0f} events/s)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
