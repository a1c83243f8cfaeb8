"""The Ed25519 keys that sign export manifests (not to be confused with exports.signing, the
HMAC of download links).

The current private key is a PEM file: `PSIMEXPORT_SIGNING_KEY_FILE` when set, else
`<data dir>/signing-key.pem`, generated once. Every public key that ever signed is a
`SigningKey` row: the current one, retired ones (still verify what they signed) and revoked
ones (a leaked key: whatever it signed fails verification). A key file that changes (an
operator replaced it) is noticed on the next signature: its key becomes current, the previous
one retired.
"""

import os
from datetime import UTC
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from exports.models import SigningKey
from exports.verify import key_id_of


class SigningKeyError(Exception):
    """No usable signing key (unreadable file, wrong key type, revoked)."""


def key_file() -> Path:
    return Path(settings.PSIMEXPORT_SIGNING_KEY_FILE or Path(settings.DATA_DIR) / "signing-key.pem")


def raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def load_private_key() -> Ed25519PrivateKey:
    """The current key, generated into the data dir the first time (never over a given file)."""
    path = key_file()
    if not path.exists() and not settings.PSIMEXPORT_SIGNING_KEY_FILE:
        _create_key_file(path, Ed25519PrivateKey.generate())
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise SigningKeyError(f"the signing key {path} cannot be read: {error}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"the signing key {path} is not an Ed25519 key")
    return private


def _create_key_file(path: Path, private: Ed25519PrivateKey) -> None:
    """Write a new key where none is, atomically: two processes starting at once keep one."""
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)  # fails when another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def current_key() -> tuple[Ed25519PrivateKey, SigningKey]:
    """The private key and its row, registering it (and retiring the previous) if new."""
    private = load_private_key()
    public = raw_public(private)
    row = register(public)
    if row.revoked_at:
        raise SigningKeyError(
            f"the signing key {row.key_id} is revoked: run manage.py rotate_signing_key"
        )
    return private, row


def register(public: bytes) -> SigningKey:
    key_id = key_id_of(public)
    row = SigningKey.objects.filter(key_id=key_id).first()
    if row is not None and row.retired_at is None:
        return row
    with transaction.atomic():
        now = timezone.now()
        SigningKey.objects.filter(retired_at__isnull=True).exclude(key_id=key_id).update(
            retired_at=now
        )
        try:
            with transaction.atomic():
                row, _ = SigningKey.objects.update_or_create(
                    key_id=key_id, defaults={"public_key": public.hex(), "retired_at": None}
                )
        except IntegrityError:  # another process registered it at the same moment
            row = SigningKey.objects.get(key_id=key_id)
    return row


def sign(message: bytes) -> tuple[str, bytes]:
    """(key id, signature) of `message` with the current key."""
    private, row = current_key()
    return row.key_id, private.sign(message)


def current_key_id() -> str:
    return current_key()[1].key_id


def rotate() -> tuple[SigningKey, SigningKey | None]:
    """A new key in the data dir; the old one is retired (its public key stays)."""
    if settings.PSIMEXPORT_SIGNING_KEY_FILE:
        raise SigningKeyError(
            "the signing key comes from PSIMEXPORT_SIGNING_KEY_FILE: put a new Ed25519 key in "
            "that file (openssl genpkey -algorithm ed25519); it is registered on first use"
        )
    old = SigningKey.objects.filter(retired_at__isnull=True).first()
    path = key_file()
    new = Ed25519PrivateKey.generate()
    staged = path.with_name(f".{path.name}.new")
    staged.unlink(missing_ok=True)
    _create_key_file(staged, new)
    os.replace(staged, path)
    row = register(raw_public(new))
    if old is not None:
        old.refresh_from_db()
    return row, old


def revoke(key_id: str, reason: str = "") -> SigningKey:
    row = SigningKey.objects.filter(key_id=key_id).first()
    if row is None:
        raise SigningKeyError(f"no signing key {key_id!r}")
    if row.retired_at is None:
        raise SigningKeyError(
            f"key {key_id} is the current key: rotate first (manage.py rotate_signing_key), "
            "then revoke it"
        )
    row.revoked_at = row.revoked_at or timezone.now()
    row.revoked_reason = reason[:200]
    row.save(update_fields=["revoked_at", "revoked_reason"])
    return row


def _iso(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def key_entry(row: SigningKey) -> dict:
    return {
        "key_id": row.key_id,
        "algorithm": "Ed25519",
        "public_key": row.public_key,
        "status": row.status,
        "created": _iso(row.created_at),
        "retired": _iso(row.retired_at),
        "revoked": _iso(row.revoked_at),
        "revoked_reason": row.revoked_reason,
    }


def published_keys() -> dict:
    """The document at /.well-known/psimexport-keys.json (and in every package)."""
    return {
        "product": "psimexport",
        "keys": [key_entry(row) for row in SigningKey.objects.order_by("created_at")],
    }


def trusted_keys() -> dict:
    """{key id: entry} as exports.verify wants it, from the database (the server's truth)."""
    return {entry["key_id"]: entry for entry in published_keys()["keys"]}
