"""The server's verification of evidence (manage.py verify_export, the /verify/ page): the
same checks and verdict as the packaged verify.py (exports.verify), but trusting this
server's own key list (with revocations) instead of the one inside the package, and able to
open AES-encrypted packages with their password."""

import zipfile
from pathlib import Path

from exports import signing_keys, verify
from exports.evidence_zip import EncryptedZipMembers


def looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def check_path(path: Path, manifest: Path | None = None, password: str | None = None):
    """(everything holds, verdict lines) for a package (zip or folder), or a video and its
    manifest. Anything unreadable is a verdict naming why, never an exception."""
    path = Path(path)
    notes = []
    try:
        if password and manifest is None:
            members, video = _encrypted(path, password, notes), None
        else:
            members, video = verify.open_input(path, manifest)
        reports = verify.check_members(members, signing_keys.trusted_keys(), video)
    except verify.PackageError as error:
        return False, [f"cannot check {path.name}: {error}", "VERDICT: NOT CHECKED."]
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        return False, [f"cannot check {path.name}: it cannot be read ({error})",
                       "VERDICT: NOT CHECKED."]
    return all(r.ok for r in reports), notes + verify.verdict_lines(reports)


def _encrypted(path: Path, password: str, notes: list) -> verify.Members:
    if path.is_dir():
        raise verify.PackageError("a folder has no password: give the folder without one")
    members = EncryptedZipMembers(path, password)
    if not members.encrypted:
        notes.append("note: a password was given but this package is not password-protected")
    return members
