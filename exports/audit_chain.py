"""The audit trail as a hash chain: appending an event, and walking the chain to check it.

Each AuditEvent gets the next position `seq`, the `prev_hash` of the event before it (64 zeros
for the first) and its own `hash`: SHA-256 over its canonical fields (canonical JSON: sorted
keys, UTF-8, no whitespace). Changing, removing or inserting an event afterwards breaks a link
that `verify_chain` (`manage.py verify_audit`, the admin's check) names.

Appending takes the chain head's row lock (SELECT ... FOR UPDATE on PostgreSQL; on SQLite the
IMMEDIATE transaction already holds the database's one write lock), so writers in any number
of web and worker processes take turns and the chain never forks. The lock is held until the
surrounding transaction commits, so an event and the change it records commit together.

The canonical fields are a format: changing them breaks every existing chain.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

GENESIS = "0" * 64
CHECK_CHUNK = 2000


class ChainError(Exception):
    """An audit event was to be changed or written around the chain."""


# -- hashing ----------------------------------------------------------------------------------


def json_safe(value):
    """`value` as it reads back from either database's JSON column, so its hash stays valid.

    PostgreSQL's jsonb stores numbers as decimals (a float 1e16 comes back as the integer) and
    refuses NUL characters; tuples come back as lists and other objects as their text.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    return str(value).replace("\x00", "\ufffd")


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_fields(event) -> dict:
    """What an event's hash covers. The user is named by `username` only: the user row may
    be deleted later (the foreign key then becomes null), which must not break the chain."""
    at = event.at.astimezone(UTC)
    return {
        "seq": event.seq,
        "prev": event.prev_hash,
        "task": str(event.task_id) if event.task_id else None,
        "camera": event.camera_id,
        "action": event.action,
        "user": event.username,
        "addr": event.remote_addr or None,
        "at": f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond:06d}Z",
        "detail": event.detail,
    }


def event_hash(event) -> str:
    return hashlib.sha256(canonical_json(event_fields(event))).hexdigest()


# -- appending --------------------------------------------------------------------------------


def append(event, *args, **kwargs) -> None:
    """Save a new AuditEvent as the chain's next link (AuditEvent.save calls this)."""
    from exports.models import AuditEvent
    from exports.tasks import sqlite_write_turn

    field = AuditEvent._meta.get_field("remote_addr")
    event.remote_addr = field.get_prep_value(event.remote_addr or None)  # as stored
    event.detail = json_safe(event.detail or {})
    if event.at is None:
        event.at = timezone.now()
    # No savepoint: if the insert fails, the change it records must not commit either.
    with sqlite_write_turn(), transaction.atomic(savepoint=False):
        seq, prev_hash = _locked_head()
        event.seq, event.prev_hash = seq + 1, prev_hash or GENESIS
        event.hash = event_hash(event)
        super(AuditEvent, event).save(*args, **kwargs)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_head_table()} SET seq = %s, hash = %s WHERE id = 1",
                [event.seq, event.hash],
            )


def _head_table() -> str:
    from exports.models import AuditChainHead

    return connection.ops.quote_name(AuditChainHead._meta.db_table)


def _locked_head() -> tuple[int, str]:
    """(seq, hash) of the chain head, its row locked until the transaction ends (plain SQL:
    this runs for every event). Made when missing (a fresh or flushed database), from the
    last event so far."""
    from exports.models import AuditChainHead, AuditEvent

    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT seq, hash FROM {_head_table()} WHERE id = 1{lock}")
        row = cursor.fetchone()
    if row is not None:
        return row[0], row[1]
    last = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    try:
        with transaction.atomic():
            AuditChainHead.objects.create(
                pk=1, seq=last.seq if last else 0, hash=last.hash if last else ""
            )
    except IntegrityError:  # another writer made it first: wait for its lock instead
        pass
    return _locked_head()


# -- checking ---------------------------------------------------------------------------------


@dataclass
class ChainReport:
    ok: bool
    events: int  # events checked before the first broken link (all of them when ok)
    message: str
    head_hash: str = ""


def describe(event) -> str:
    at = event.at.astimezone(UTC)
    what = f"{event.action} {at:%Y-%m-%d %H:%M:%S} UTC, camera {event.camera_id}"
    if event.task_id:
        what += f", task {event.task_id}"
    return f"event #{event.seq} (id {event.pk}: {what})"


def verify_chain() -> ChainReport:
    """Walk the chain from its first event; the first broken link ends the walk."""
    from exports.models import AuditChainHead, AuditEvent

    previous, prev_hash, checked = None, GENESIS, 0
    for event in AuditEvent.objects.filter(seq__isnull=False).order_by("seq").iterator(
        chunk_size=CHECK_CHUNK
    ):
        broken = _broken_link(previous, prev_hash, checked + 1, event)
        if broken:
            return ChainReport(False, checked, broken)
        previous, prev_hash, checked = event, event.hash, checked + 1
    outside = AuditEvent.objects.filter(seq__isnull=True).order_by("pk").first()
    if outside is not None:
        return ChainReport(
            False, checked,
            f"event id {outside.pk} ({outside.action}, camera {outside.camera_id}) is not in "
            "the chain: it was written around it",
        )
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is None and checked:
        return ChainReport(
            False, checked,
            f"the chain's head row is missing (it named the last event; {checked} events found)",
        )
    if head is not None and (head.seq, head.hash or GENESIS) != (checked, prev_hash):
        return ChainReport(
            False, checked,
            f"the chain ends at event #{checked} but its head names event #{head.seq}: "
            "the last events were removed",
        )
    return ChainReport(True, checked, f"the chain holds: {checked} events", prev_hash)


def _broken_link(previous, prev_hash: str, seq: int, event) -> str | None:
    if event.seq != seq:
        missing = f"#{seq}" if event.seq == seq + 1 else f"#{seq}–#{event.seq - 1}"
        return f"event {missing} missing: removed before {describe(event)}"
    if event.prev_hash != prev_hash:
        before = describe(previous) if previous else "the start of the chain"
        return (
            f"{describe(event)} does not follow {before}: it names a previous hash "
            f"{event.prev_hash[:16]}…, the event before it hashes to {prev_hash[:16]}… "
            "(the event before was changed and re-hashed, or this link was altered)"
        )
    if event_hash(event) != event.hash:
        return f"{describe(event)} was changed after it was written: its fields no longer match its hash"
    return None


def check_and_record() -> ChainReport:
    """verify_chain, with the result kept on the chain head for the admin to show."""
    from exports.models import AuditChainHead

    report = verify_chain()
    if not AuditChainHead.objects.filter(pk=1).exists():
        with transaction.atomic():
            _locked_head()
    AuditChainHead.objects.filter(pk=1).update(
        checked_at=timezone.now(), checked_ok=report.ok, checked_events=report.events,
        checked_message=report.message,
    )
    return report


def last_check():
    """The cached result of the last check (a AuditChainHead), None if never checked."""
    from exports.models import AuditChainHead

    head = AuditChainHead.objects.filter(pk=1).first()
    return head if head is not None and head.checked_at is not None else None


def check_job() -> str:
    """A full check in a worker (the admin's button, and hourly from maintenance); a broken
    chain is logged as an error."""
    import logging

    report = check_and_record()
    if not report.ok:
        logging.getLogger(__name__).error("audit chain broken: %s", report.message)
    return report.message


def enqueue_check() -> None:
    from exports.maintenance import get_queue

    get_queue().enqueue(check_job, result_ttl=600, description="check the audit chain")


PERIODIC_CHECK_KEY = "psimexport:audit-chain:periodic-check"
PERIODIC_CHECK_SECONDS = 3600


def check_periodically() -> bool:
    """Maintenance's step: queue a full check at most once an hour (a Redis key with a TTL
    says one was queued), as a job of its own so a long chain never holds the round."""
    from exports.maintenance import get_queue

    if not get_queue().connection.set(PERIODIC_CHECK_KEY, "1", nx=True, ex=PERIODIC_CHECK_SECONDS):
        return False
    enqueue_check()
    return True
