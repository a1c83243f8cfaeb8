#!/usr/bin/env python3
"""Check a psimexport evidence package: are the videos exactly what psimexport exported, and
did psimexport sign that statement?

    python3 verify.py                      # the extracted package this file lies in
    python3 verify.py PACKAGE.zip          # a package as downloaded
    python3 verify.py VIDEO MANIFEST.json  # a video and its manifest (manifest.sig beside it)
    ... --keys psimexport-keys.json        # trust these public keys (file or https:// URL)

Needs Python 3.11 and nothing else: the Ed25519 check below is RFC 8032's (section 5.1.7),
in plain Python. The server runs this same module for `manage.py verify_export` and the
/verify/ page, so all three give the same verdict. Exit status 0 only when everything holds.

A manifest (`manifest.json`, canonical JSON: sorted keys, UTF-8, no whitespace) describes one
export: camera, range, frames, the output file's size and SHA-256, the source files and who
asked. An export in parts (format psimexport-manifest/2) lists every part in `parts`, each
with its file name, size, SHA-256 and range; `output` is then its first part. `manifest.sig` holds an Ed25519 signature of the manifest's exact bytes and the id of
the key that made it. The public keys travel in `psimexport-keys.json`; compare the key's
fingerprint with the one the issuing server publishes at /.well-known/psimexport-keys.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
KEYS = "psimexport-keys.json"
MANIFEST_FORMAT = "psimexport-manifest/1"
# An export in parts: `parts` lists every file. A new version, so that a verify.py from before
# parts refuses such a manifest instead of checking its first part alone and saying INTACT.
PARTS_FORMAT = "psimexport-manifest/2"
FORMATS = (MANIFEST_FORMAT, PARTS_FORMAT)
CHUNK = 1 << 20


# -- Ed25519 verification, RFC 8032 section 5.1.7 (reference code of section 6) ---------------

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_L = 2**252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a, b):
    """Points in extended homogeneous coordinates (X, Y, Z, T)."""
    x = (a[1] - a[0]) * (b[1] - b[0]) % _P
    y = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c = 2 * a[3] * b[3] * _D % _P
    d = 2 * a[2] * b[2] % _P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f, g * h, f * g, e * h)


def _mul(scalar, point):
    result = (0, 1, 1, 0)
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(data: bytes):
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, -1, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s Ed25519 signature of `message`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decompress(public_key)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    return _equal(_mul(s, _G), _add(r, _mul(h % _L, a)))


# -- the manifest -----------------------------------------------------------------------------


def canonical_json(value) -> bytes:
    """The one byte form a manifest is signed in."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id_of(public_key: bytes) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]


class PackageError(Exception):
    """The input is not something this tool can check (not a package, damaged, encrypted)."""


@dataclass
class Check:
    ok: bool
    what: str


@dataclass
class Report:
    """The checks of one manifest and the files it names."""

    name: str
    summary: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, ok: bool, what: str) -> bool:
        self.checks.append(Check(ok, what))
        return ok


def load_keys(data: bytes) -> dict:
    """{key id: key entry} from a psimexport-keys.json document."""
    try:
        document = json.loads(data)
        entries = document["keys"]
        return {entry["key_id"]: entry for entry in entries if isinstance(entry, dict)}
    except (ValueError, KeyError, TypeError) as error:
        raise PackageError(f"the key list is not a psimexport key list ({error})") from None


def check_manifest(report: Report, manifest_bytes: bytes, signature_bytes: bytes | None, keys):
    """Signature and key checks; returns the manifest (a dict) or None when unreadable."""
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        report.add(False, f"{report.name} is not a readable manifest ({error})")
        return None
    report.summary = describe(manifest)
    if manifest.get("format") not in FORMATS:
        report.add(False, f"{report.name} is not a psimexport manifest (format "
                          f"{str(manifest.get('format'))[:40]!r})")
    if canonical_json(manifest) != manifest_bytes:
        report.add(False, f"{report.name} is not in canonical form: it was edited after signing")
    check_signature(report, manifest, manifest_bytes, signature_bytes, keys)
    return manifest


def check_signature(report, manifest, manifest_bytes, signature_bytes, keys) -> None:
    if signature_bytes is None:
        report.add(False, f"{SIGNATURE} is missing: the manifest is not signed")
        return
    try:
        signature = json.loads(signature_bytes)
        key_id = str(signature["key_id"])
        raw = bytes.fromhex(signature["signature"])
    except (ValueError, KeyError, TypeError):
        report.add(False, f"{SIGNATURE} is damaged (not a psimexport signature)")
        return
    if key_id != manifest.get("signing_key_id"):
        report.add(False, f"{SIGNATURE} names key {key_id[:32]} but the manifest names key "
                          f"{str(manifest.get('signing_key_id'))[:32]}")
    key = keys.get(key_id)
    if key is None:
        report.add(False, f"signed by key {key_id[:32]}, which is not among the trusted keys "
                          f"(unknown key)")
        return
    try:
        public = bytes.fromhex(key["public_key"])
    except (KeyError, TypeError, ValueError):
        report.add(False, f"the trusted key list's entry for key {key_id} is damaged")
        return
    if key_id_of(public) != key_id:
        report.add(False, f"the trusted key list's key {key_id} does not have that id")
        return
    if not ed25519_verify(public, manifest_bytes, raw):
        report.add(False, "the signature does not match the manifest: the manifest was changed "
                          f"after signing, or was not signed by key {key_id}")
        return
    if key.get("status") == "revoked":
        why = f" ({key['revoked_reason']})" if key.get("revoked_reason") else ""
        report.add(False, f"signed by key {key_id}, which was revoked on "
                          f"{key.get('revoked', '?')}{why}: the signature is not to be trusted")
        return
    state = f"retired since {key.get('retired')}" if key.get("status") == "retired" else "current"
    report.add(True, f"signature valid: Ed25519 key {key_id} ({state}), "
                     f"public key {key['public_key']}")


def describe(manifest: dict) -> str:
    camera = manifest.get("camera") or {}
    recorded = manifest.get("recorded") or {}
    return (f"task {manifest.get('task', {}).get('id')}, camera {camera.get('id')} "
            f"{camera.get('name', '')!r}, {recorded.get('first_frame')} to "
            f"{recorded.get('last_frame')}, {recorded.get('frames')} frames")


def signed_files(manifest: dict) -> list[dict]:
    """The files a manifest signs, each {file_name, size, sha256}: every part of an export in
    parts (format 2), else its one `output`."""
    parts = manifest.get("parts")
    if manifest.get("format") == PARTS_FORMAT or parts is not None:
        return [p if isinstance(p, dict) else {} for p in parts] if isinstance(parts, list) else []
    output = manifest.get("output")
    return [output if isinstance(output, dict) else {}]


def check_video(report: Report, entry: dict, opener, label: str = "the video") -> None:
    """Compare one file (opener() gives a binary file, or None when absent) with its entry
    in the manifest ({file_name, size, sha256})."""
    name = f"{label} {str(entry.get('file_name', '?'))}"
    handle = opener()
    if handle is None:
        report.add(False, f"{name} is missing")
        return
    size, digest = 0, hashlib.sha256()
    try:
        with handle:
            while chunk := handle.read(CHUNK):
                size += len(chunk)
                digest.update(chunk)
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        report.add(False, f"{name} cannot be read completely ({error})")
        return
    if size != entry.get("size"):
        report.add(False, f"{name} has {size} bytes; the manifest says "
                          f"{entry.get('size')}: it was changed or cut short")
    elif digest.hexdigest() != entry.get("sha256"):
        report.add(False, f"{name} differs from the exported one: SHA-256 "
                          f"{digest.hexdigest()}, the manifest says {entry.get('sha256')}")
    else:
        report.add(True, f"{name}: {size} bytes, SHA-256 {digest.hexdigest()} as signed")


def check_videos(report: Report, manifest: dict, members, prefix: str, given: str | None):
    """Check every file the manifest signs: `prefix` + its name in the package, or `given`
    (a video named on the command line) for an export in one piece."""
    files = signed_files(manifest)
    if not files:
        report.add(False, f"{report.name} lists no video (its parts are missing or damaged)")
        return
    for number, entry in enumerate(files, start=1):
        label = f"part {number} of {len(files)}," if len(files) > 1 else "the video"
        name = given if given and len(files) == 1 else prefix + str(entry.get("file_name", ""))
        check_video(report, entry, lambda name=name: members.open(name), label)
    named = getattr(members, "video_name", None)
    if given and named and len(files) > 1 and named not in {e.get("file_name") for e in files}:
        report.add(False, f"{named} is not one of the {len(files)} parts this manifest signs")


# -- packages: a zip, an extracted folder, or a video with its manifest -----------------------


class Members:
    """Read access to a package's files by their path inside it ("a/manifest.json")."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def open(self, name: str):
        """A binary file object, or None when there is no such member."""
        raise NotImplementedError

    def read(self, name: str) -> bytes | None:
        handle = self.open(name)
        if handle is None:
            return None
        with handle:
            return handle.read()


class ZipMembers(Members):
    def __init__(self, source):
        try:
            self.zip = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, EOFError, ValueError) as error:
            raise PackageError(f"not a complete zip file: it is damaged or cut short ({error})") \
                from None
        if any(info.flag_bits & 0x1 for info in self.zip.infolist()):
            raise PackageError(
                "the package is password-protected: open it with 7-Zip (or another tool that "
                "reads WinZip AES) and its password, then run verify.py in the extracted folder"
            )

    def names(self):
        return [info.filename for info in self.zip.infolist() if not info.is_dir()]

    def open(self, name):
        try:
            return self.zip.open(name)
        except KeyError:
            return None
        except (zipfile.BadZipFile, OSError) as error:
            raise PackageError(f"the package is damaged at {name} ({error})") from None


class FolderMembers(Members):
    def __init__(self, root: Path):
        self.root = Path(root)

    def names(self):
        return [p.relative_to(self.root).as_posix() for p in sorted(self.root.rglob("*"))
                if p.is_file()]

    def open(self, name):
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()):  # a manifest naming "../x"
            return None
        return open(path, "rb") if path.is_file() else None  # noqa: SIM115 (caller closes)


class FileMembers(Members):
    """A video and its manifest given separately; the signature lies beside the manifest.
    The other parts of an export in parts are looked for beside the video, by name."""

    def __init__(self, video: Path, manifest: Path):
        sig = manifest.with_name(manifest.name.removesuffix(".json") + ".sig")
        if not sig.exists():
            sig = manifest.with_name(SIGNATURE)
        self.files = {MANIFEST: manifest, SIGNATURE: sig, "video": video,
                      KEYS: manifest.with_name(KEYS)}
        self.video_name = video.name

    def names(self):
        return [name for name, path in self.files.items() if path.is_file()]

    def open(self, name):
        path = self.files.get(name)
        if path is None and PurePosixPath(name).name == name not in ("", ".", ".."):
            path = self.files["video"].with_name(name)  # a part: beside the video, no folders
        return open(path, "rb") if path is not None and path.is_file() else None  # noqa: SIM115


def check_members(members: Members, keys: dict | None, video_override: str | None = None):
    """One Report per manifest in the package (a batch holds one per task folder)."""
    names = members.names()
    manifests = sorted(n for n in names if PurePosixPath(n).name == MANIFEST)
    if not manifests:
        raise PackageError(f"no {MANIFEST} in it: this is not a psimexport evidence package")
    if keys is None:
        keys_name = next((n for n in names if PurePosixPath(n).name == KEYS), None)
        if keys_name is None:
            raise PackageError(f"no trusted keys: {KEYS} is missing; give --keys")
        keys = load_keys(members.read(keys_name))
    reports = []
    for name in manifests:
        folder = str(PurePosixPath(name).parent)
        prefix = "" if folder == "." else folder + "/"
        report = Report(name)
        manifest = check_manifest(report, members.read(name), members.read(prefix + SIGNATURE),
                                  keys)
        if manifest is not None:
            check_videos(report, manifest, members, prefix, video_override)
        reports.append(report)
    return reports


def verdict_lines(reports: list[Report]) -> list[str]:
    """The verdict as printed by verify.py, verify_export and shown on /verify/."""
    lines = []
    for report in reports:
        lines.append(f"{report.name}: {report.summary}" if report.summary else report.name)
        lines += [f"  {'OK  ' if c.ok else 'FAIL'} {c.what}" for c in report.checks]
    if reports and all(report.ok for report in reports):
        lines.append("VERDICT: INTACT. Every video is exactly the file psimexport exported, "
                     "as its signed manifest describes.")
    else:
        lines.append("VERDICT: NOT INTACT. See FAIL above.")
    return lines


def open_input(path: Path, manifest: Path | None = None) -> tuple[Members, str | None]:
    """Members of what the user gave: a zip, a folder, or a video with its manifest."""
    if manifest is not None:
        return FileMembers(path, manifest), "video"
    if path.is_dir():
        return FolderMembers(path), None
    if not path.is_file():
        raise PackageError(f"{path} does not exist")
    return ZipMembers(path), None


def fetch_keys(where: str) -> dict:
    if where.startswith(("https://", "http://")):
        from urllib.request import urlopen

        with urlopen(where, timeout=30) as answer:  # noqa: S310 (the user's own URL)
            return load_keys(answer.read(1 << 20))
    return load_keys(Path(where).read_bytes())


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    keys = None
    if "--keys" in args:
        at = args.index("--keys")
        try:
            keys = fetch_keys(args[at + 1])
        except (IndexError, OSError, PackageError) as error:
            print(f"cannot read the trusted keys: {error}")
            return 2
        del args[at:at + 2]
    if len(args) > 2 or any(a.startswith("-") for a in args):
        print(__doc__)
        return 2
    here = Path(__file__).resolve().parent
    target = Path(args[0]) if args else here
    try:
        members, video = open_input(target, Path(args[1]) if len(args) == 2 else None)
        reports = check_members(members, keys, video)
    except PackageError as error:
        print(f"cannot check {target.name or target}: {error}")
        print("VERDICT: NOT CHECKED.")
        return 2
    print("\n".join(verdict_lines(reports)))
    return 0 if all(report.ok for report in reports) else 1


if __name__ == "__main__":
    # A console that cannot show a camera's name (Windows code pages) shows "?" instead of
    # stopping the check.
    sys.stdout.reconfigure(errors="replace")
    sys.exit(main())
