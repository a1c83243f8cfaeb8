"""The evidence package: one zip, streamed, holding a task's (or a batch's) video, its signed
manifest, its audit trail, the offline checker `verify.py`, the public keys and a README.

One task: the files at the top of the zip. A batch: one folder per task, with `verify.py`,
`README.txt` and `psimexport-keys.json` at the top. With a password the zip is WinZip AES-256
(exports.evidence_zip); the password is used for this stream only, never stored or logged.
"""

import json
from pathlib import Path

from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse

from exports import signing_keys, verify
from exports.download import DownloadUnavailable, task_file_paths
from exports.evidence_zip import ZipStream
from exports.manifest import manifest_paths
from exports.models import AuditEvent

VERIFY_SOURCE = Path(verify.__file__)
CHUNK = 1024 * 1024
AUDIT = "audit-trail.json"

README = """\
EVIDENCE PACKAGE FROM PSIMEXPORT

This package holds recorded video exported from a video surveillance archive, with a
signed statement of where it came from.

What is in it
  - the video file(s) (for example camera-1_2026-11-20T10-00-13Z_....mp4; a long export,
    or one with a size limit, comes in parts: ..._part01.mp4, ..._part02.mp4, each a
    complete video, the next starting where the last ended); any common player (VLC,
    Windows Media Player, QuickTime) plays them;
  - manifest.json: the statement. It names the camera, the time range, the first and last
    recorded frame, the number of frames, every gap in the recording, the original recorded
    files the video was made from (each with its SHA-256 fingerprint), the size and
    fingerprint of each video file (of every part), who asked for the export, from which
    address and when, and the case name and comment;
  - manifest.sig: psimexport's digital signature (Ed25519) of manifest.json;
  - audit-trail.json: every action recorded for this export (created, started, finished,
    downloaded), with user, address and time;
  - psimexport-keys.json: the public keys of the server that signed it;
  - verify.py: a small program that checks all of the above;
  - README.txt: this text.

How to check it
  1. Install Python 3.11 or newer (python.org; nothing else is needed).
  2. Unpack this zip into a folder (if it asks for a password, use the one you were given;
     on Windows use 7-Zip for password-protected packages).
  3. In that folder run:   python3 verify.py      (on Windows:  py verify.py)
  4. "VERDICT: INTACT" means each video is exactly, to the last byte, the file the server
     exported and signed. Anything else names what differs.

The check trusts the keys in psimexport-keys.json. To be sure they are the server's own,
compare the key number shown by verify.py with the one the server publishes at
https://<server>/.well-known/psimexport-keys.json (or ask its operator), or run
    python3 verify.py --keys https://<server>/.well-known/psimexport-keys.json
"""


def audit_trail(task) -> bytes:
    """Every audit event of the task, all their fields (whatever the model holds), oldest first."""
    events = list(AuditEvent.objects.filter(task_id=task.id).order_by("at", "pk").values())
    return json.dumps(events, cls=DjangoJSONEncoder, indent=1, ensure_ascii=False).encode()


def task_files(task) -> dict:
    """{name in the package: path} of a ready task (its file, or every part of an export in
    parts, first; then its manifest); DownloadUnavailable when it has none."""
    videos = task_file_paths(task)
    manifest, signature = manifest_paths(videos[0])
    if not manifest.is_file() or not signature.is_file():
        raise DownloadUnavailable(
            "this export has no signed manifest (it was made before evidence packages "
            "existed): download the file, or export the range again", 409
        )
    return {**{video.name: video for video in videos},
            verify.MANIFEST: manifest, verify.SIGNATURE: signature}


def _file_chunks(path: Path):
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def package_stream(items, password: str | None = None):
    """Yield the zip of [(task, files)] (files from task_files); a batch when several."""
    zs = ZipStream(password)
    batch = len(items) > 1
    used = set()
    for task, files in items:
        stem = next(iter(files.values())).stem.removesuffix("_part01")
        folder = ""
        if batch:
            folder = stem if stem not in used else f"{stem}_{task.id}"
            used.add(folder)
            folder += "/"
        for name, path in files.items():
            stat = path.stat()
            yield from zs.member(folder + name, stat.st_size, _file_chunks(path), stat.st_mtime)
        trail = audit_trail(task)
        yield from zs.member(folder + AUDIT, len(trail), [trail])
    extras = {
        "verify.py": VERIFY_SOURCE.read_bytes(),
        "README.txt": README.encode(),
        verify.KEYS: json.dumps(signing_keys.published_keys(), indent=1).encode(),
    }
    for name, data in extras.items():
        yield from zs.member(name, len(data), [data])
    yield from zs.close()


def package_response(items, file_stem: str, password: str | None = None):
    """A streamed zip response; `items` are checked (task_files) before anything is sent."""
    response = StreamingHttpResponse(package_stream(items, password),
                                     content_type="application/zip")
    suffix = "-protected" if password else ""
    response["Content-Disposition"] = f'attachment; filename="{file_stem}-evidence{suffix}.zip"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
