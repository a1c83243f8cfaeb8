"""Evidence: the signed manifest of every export, source hashes, key rotation and revocation,
the evidence package (plain and AES), and its verification three ways (verify_export, the
/verify/ page, the offline verify.py in a bare venv)."""

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import av
import pytest
from django.core.management import call_command

from exports import signing_keys, source_hashes, verify
from exports.models import AuditEvent, ExportTask, Segment, SigningKey
from tests import api_support
from tests.api_support import T0, psim, run_worker

recordings, cameras, users, tokens = (
    api_support.recordings, api_support.cameras, api_support.users, api_support.tokens
)
alice, bob = api_support.alice, api_support.bob

pytestmark = pytest.mark.django_db
RANGE = {"CameraId": "1", "From": psim(T0 + timedelta(seconds=1)),
         "To": psim(T0 + timedelta(seconds=5))}


@pytest.fixture(autouse=True)
def _own_signing_key(settings, tmp_path):
    """Each test signs with a key of its own, generated into its own data dir."""
    settings.DATA_DIR = tmp_path / "data"
    settings.PSIMEXPORT_SIGNING_KEY_FILE = ""


def export(api, capture, queue, **body) -> ExportTask:
    with capture(execute=True):
        response = api.create(**(body or RANGE))
    assert response.status_code == 200, response.json()
    # Case data as the API's Name/Comment store it (set on the row: this file tests evidence).
    ExportTask.objects.filter(id=response.json()["ArchiveTaskId"]).update(
        case_name="Case 42", case_comment="back door"
    )
    run_worker(queue)
    task = ExportTask.objects.get(id=response.json()["ArchiveTaskId"])
    assert task.state == "ReadyForDownload", task.error_message
    return task


@pytest.fixture
def ready(alice, exports_queue, django_capture_on_commit_callbacks):
    return export(alice, django_capture_on_commit_callbacks, exports_queue)


def package_bytes(api, task, **headers) -> bytes:
    response = api.get("/download", {"file": str(task.id), "package": "1"}, **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/zip"
    return b"".join(response.streaming_content)


def check_bytes(data: bytes, keys=None):
    reports = verify.check_members(verify.ZipMembers(io.BytesIO(data)),
                                   keys or signing_keys.trusted_keys())
    return all(r.ok for r in reports), "\n".join(verify.verdict_lines(reports))


def task_folder(task) -> Path:
    from django.conf import settings

    return Path(settings.EXPORTS_DIR) / str(task.id)


# -- the manifest -----------------------------------------------------------------------------


def test_manifest_describes_the_export_and_is_signed_canonical_json(ready, recordings):
    folder = task_folder(ready)
    data = (folder / "manifest.json").read_bytes()
    manifest = json.loads(data)
    assert verify.canonical_json(manifest) == data
    video = folder / Path(ready.output_path).name
    assert manifest["output"] == {"file_name": video.name, "size": video.stat().st_size,
                                  "sha256": hashlib.sha256(video.read_bytes()).hexdigest()}
    assert manifest["task"]["id"] == str(ready.id)
    assert manifest["camera"] == {"id": "1", "name": "Entrance"}
    assert manifest["case"] == {"name": "Case 42", "comment": "back door", "keep": False}
    assert manifest["requested_by"]["user"] == "alice"
    assert manifest["requested_by"]["address"] == "127.0.0.1"
    # What the decoded file holds: frames and the first frame's recorded time.
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert manifest["recorded"]["frames"] == frames == 100
    assert manifest["recorded"]["first_frame"] == "2026-11-20T10:00:01.000000Z"
    assert manifest["recorded"]["last_frame"] == "2026-11-20T10:00:04.960000Z"
    assert manifest["streams"] == {"video": {"codec": "h264", "technique": ready.technique},
                                   "audio": None}
    assert manifest["technique"] == ready.technique
    # Every source: relative path, size, mtime, SHA-256 of the whole file, kept in the index.
    paths = sorted(p for p in recordings.rglob("*.mp4") if "/1/" in p.as_posix())
    assert [s["path"] for s in manifest["sources"]] == [
        p.relative_to(recordings).as_posix() for p in paths
    ][0:3]
    for source in manifest["sources"]:
        file = recordings / source["path"]
        assert source["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        assert source["size"] == file.stat().st_size and source["complete"] is True
        row = Segment.objects.get(path=source["path"])
        assert row.sha256 == source["sha256"]
    signature = json.loads((folder / "manifest.sig").read_bytes())
    key = SigningKey.objects.get()
    assert signature["key_id"] == manifest["signing_key_id"] == key.key_id
    assert verify.ed25519_verify(bytes.fromhex(key.public_key), data,
                                 bytes.fromhex(signature["signature"]))


def test_a_source_changed_since_it_was_hashed_is_reported(cameras, recordings, tmp_path):
    camera = cameras[0]
    segment = Segment.objects.filter(camera=camera).first()
    path = recordings / segment.path
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(path.read_bytes())
    camera.archive_path = str(tmp_path)
    segment.path = "copy.mp4"
    assert source_hashes.store_hash(segment, copy)
    first = segment.sha256
    with open(copy, "ab") as handle:  # the file is rewritten after it was hashed
        handle.write(b"tampered")
    stat = copy.stat()
    entry = source_hashes._describe("copy.mp4", segment, copy, stat.st_size, stat.st_mtime, None)
    assert entry["changed_since_hashed"]["sha256"] == first
    assert entry["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest() != first


def test_a_growing_segment_is_hashed_over_the_bytes_the_export_read(tmp_path):
    path = tmp_path / "growing.ts"
    path.write_bytes(b"x" * 5000)
    stat = path.stat()
    entry = source_hashes._describe("growing.ts", None, path, 3000, stat.st_mtime, None)
    assert entry["complete"] is False
    assert entry["sha256"] == hashlib.sha256(b"x" * 3000).hexdigest()
    assert "first 3000 bytes" in entry["hashed"]


def test_maintenance_hashes_complete_segments_newest_first_within_its_budget(cameras):
    assert Segment.objects.filter(sha256="").count() == 4
    assert source_hashes.hash_pending_segments(budget_seconds=0) == 0
    assert source_hashes.hash_pending_segments() == 4
    assert not Segment.objects.filter(sha256="").exists()
    assert source_hashes.hash_pending_segments() == 0


def test_parallel_hasher_hashes_unhashed_complete_sources_during_the_export(cameras, recordings):
    camera = cameras[0]
    rows = list(Segment.objects.filter(camera=camera))
    rows[0].sha256 = "0" * 64  # already hashed: not read again
    with source_hashes.ParallelHasher(camera, rows) as hasher:
        hashed = hasher.results(keepalive=lambda: None)
    assert sorted(hashed) == sorted(str(recordings / r.path) for r in rows[1:])
    for path, (size, _mtime, digest) in hashed.items():
        assert (size, digest) == (Path(path).stat().st_size,
                                  hashlib.sha256(Path(path).read_bytes()).hexdigest())
    with pytest.raises(RuntimeError), source_hashes.ParallelHasher(camera, rows) as hasher:
        raise RuntimeError("the export failed")
    assert hasher._stop.is_set()


# -- keys -------------------------------------------------------------------------------------


def test_admin_lists_the_signing_keys(ready, users):
    key = SigningKey.objects.get()
    page = page_client(users["root"]).get("/admin/exports/signingkey/").content.decode()
    assert key.key_id in page and "current" in page


def test_keys_are_published_and_rotation_keeps_the_old_one(ready, client):
    old = SigningKey.objects.get()
    call_command("rotate_signing_key", stdout=io.StringIO())
    answer = client.get("/.well-known/psimexport-keys.json")
    assert answer.status_code == 200
    keys = {k["key_id"]: k for k in answer.json()["keys"]}
    assert keys[old.key_id]["status"] == "retired"
    [new] = [k for k in keys.values() if k["status"] == "current"]
    assert new["key_id"] != old.key_id
    assert signing_keys.current_key_id() == new["key_id"]


def test_the_signing_key_may_come_from_a_file(settings, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    path = tmp_path / "given.pem"
    path.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    settings.PSIMEXPORT_SIGNING_KEY_FILE = str(path)
    key_id, signature = signing_keys.sign(b"hello")
    private.public_key().verify(signature, b"hello")
    assert key_id == verify.key_id_of(signing_keys.raw_public(private))
    with pytest.raises(Exception, match="PSIMEXPORT_SIGNING_KEY_FILE"):
        call_command("rotate_signing_key", stdout=io.StringIO())


# -- Ed25519 in pure Python -------------------------------------------------------------------

# RFC 8032 section 7.1, tests 1, 2, 3 and SHA(abc).
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
def test_pure_python_ed25519_passes_rfc8032_vectors(public, message, signature):
    public, message, signature = (bytes.fromhex(v) for v in (public, message, signature))
    assert verify.ed25519_verify(public, message, signature)
    assert not verify.ed25519_verify(public, message + b"x", signature)
    bad = bytearray(signature)
    bad[5] ^= 1
    assert not verify.ed25519_verify(public, message, bytes(bad))


def test_pure_python_ed25519_agrees_with_cryptography():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for size in (0, 1, 31, 64, 1000):
        private = Ed25519PrivateKey.generate()
        message = hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1)
        signature = private.sign(message[:size])
        public = signing_keys.raw_public(private)
        assert verify.ed25519_verify(public, message[:size], signature)
        other = signing_keys.raw_public(Ed25519PrivateKey.generate())
        assert not verify.ed25519_verify(other, message[:size], signature)


# -- the package and its verification ---------------------------------------------------------


def test_package_holds_everything_and_verifies(ready, alice):
    data = package_bytes(alice, ready)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        video = Path(ready.output_path).name
        assert names == {video, "manifest.json", "manifest.sig", "audit-trail.json",
                         "verify.py", "README.txt", "psimexport-keys.json"}
        assert archive.getinfo(video).compress_type == zipfile.ZIP_STORED
        assert archive.getinfo(video).flag_bits & 0x08  # streamed: data descriptors
        trail = json.loads(archive.read("audit-trail.json"))
        assert [e["action"] for e in trail] == ["create", "start", "finish", "download"]
        assert trail[-1]["detail"]["package"] is True
        assert archive.read("verify.py") == Path(verify.__file__).read_bytes()
    ok, verdict = check_bytes(data)
    assert ok, verdict
    assert "VERDICT: INTACT" in verdict
    assert AuditEvent.objects.filter(task_id=ready.id, action="download").count() == 1


def _replace_member(data: bytes, name: str, change) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info.filename, change(content) if info.filename == name else content)
    return out.getvalue()


def _flip(content: bytes, at: int) -> bytes:
    changed = bytearray(content)
    changed[at] ^= 0x01
    return bytes(changed)


def test_a_changed_byte_in_the_video_is_named(ready, alice):
    video = Path(ready.output_path).name
    data = _replace_member(package_bytes(alice, ready), video, lambda c: _flip(c, len(c) // 2))
    ok, verdict = check_bytes(data)
    assert not ok
    assert f"the video {video} differs from the exported one" in verdict
    assert "signature valid" in verdict


def test_a_changed_byte_in_the_manifest_is_named(ready, alice):
    def edit(content):
        return content.replace(b'"frames":100', b'"frames":101')

    ok, verdict = check_bytes(_replace_member(package_bytes(alice, ready), "manifest.json", edit))
    assert not ok
    assert "the signature does not match the manifest" in verdict


def test_an_unknown_key_is_named(ready, alice):
    data = package_bytes(alice, ready)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stranger = signing_keys.raw_public(Ed25519PrivateKey.generate())
    ok, verdict = check_bytes(data, keys={verify.key_id_of(stranger): {
        "key_id": verify.key_id_of(stranger), "public_key": stranger.hex(), "status": "current"}})
    assert not ok and "which is not among the trusted keys (unknown key)" in verdict


def test_a_retired_key_still_verifies_and_a_revoked_one_fails(ready, alice):
    data = package_bytes(alice, ready)
    old = SigningKey.objects.get()
    call_command("rotate_signing_key", stdout=io.StringIO())
    ok, verdict = check_bytes(data)
    assert ok, verdict
    assert f"key {old.key_id} (retired since" in verdict
    call_command("rotate_signing_key", revoke=old.key_id, reason="laptop stolen",
                 stdout=io.StringIO())
    ok, verdict = check_bytes(data)
    assert not ok
    assert f"signed by key {old.key_id}, which was revoked on" in verdict
    assert "(laptop stolen)" in verdict


def test_the_current_key_cannot_be_revoked_before_rotation(ready):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="rotate first"):
        call_command("rotate_signing_key", revoke=SigningKey.objects.get().key_id)


def test_a_truncated_package_is_named(ready, alice):
    data = package_bytes(alice, ready)
    with pytest.raises(verify.PackageError, match="damaged or cut short"):
        check_bytes(data[: len(data) * 2 // 3])


def test_verify_export_command_checks_a_package_and_a_video_with_its_manifest(
    ready, alice, tmp_path, capsys
):
    package = tmp_path / "evidence.zip"
    package.write_bytes(package_bytes(alice, ready))
    call_command("verify_export", str(package))
    assert "VERDICT: INTACT" in capsys.readouterr().out
    folder = task_folder(ready)
    video = folder / Path(ready.output_path).name
    call_command("verify_export", str(video), str(folder / "manifest.json"))
    assert "VERDICT: INTACT" in capsys.readouterr().out
    other = tmp_path / "other.mp4"
    other.write_bytes(_flip(video.read_bytes(), 100))
    with pytest.raises(SystemExit) as exit_:
        call_command("verify_export", str(other), str(folder / "manifest.json"))
    assert exit_.value.code == 1
    assert "differs from the exported one" in capsys.readouterr().out
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SystemExit):
        call_command("verify_export", str(garbage))
    assert "not a complete zip file" in capsys.readouterr().out


def test_offline_verify_py_runs_in_a_bare_venv(ready, alice, tmp_path):
    """The script as shipped, in a venv with nothing installed, on a real package."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    package = tmp_path / "evidence.zip"
    package.write_bytes(package_bytes(alice, ready))
    with zipfile.ZipFile(package) as archive:
        archive.extractall(tmp_path / "unpacked")
    script = tmp_path / "unpacked" / "verify.py"
    for args in ([], [str(package)]):
        done = subprocess.run([str(python), "-I", str(script), *args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "VERDICT: INTACT" in done.stdout
    video = tmp_path / "unpacked" / Path(ready.output_path).name
    done = subprocess.run([str(python), "-I", str(script), str(video),
                           str(tmp_path / "unpacked" / "manifest.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "VERDICT: INTACT" in done.stdout, done.stdout
    video.write_bytes(_flip(video.read_bytes(), 1000))
    done = subprocess.run([str(python), "-I", str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "differs from the exported one" in done.stdout


# -- AES-256 (WinZip AE-2) --------------------------------------------------------------------

SEVEN_ZIP = shutil.which("7z")
needs_7z = pytest.mark.skipif(
    SEVEN_ZIP is None, reason="7-Zip (7z, Debian package p7zip-full) is not installed"
)
PASSWORD = "correct horse battery staple"


def protected_package(api, task, tmp_path) -> Path:
    path = tmp_path / "protected.zip"
    path.write_bytes(package_bytes(api, task, HTTP_X_PACKAGE_PASSWORD=PASSWORD))
    return path


@needs_7z
def test_a_password_protected_package_opens_in_7zip_and_verifies(ready, alice, tmp_path):
    package = protected_package(alice, ready, tmp_path)
    with zipfile.ZipFile(package) as archive:
        infos = archive.infolist()
        assert infos and all(i.flag_bits & 0x1 and i.compress_type == 99 for i in infos)
    out = tmp_path / "out"
    done = subprocess.run([SEVEN_ZIP, "x", f"-p{PASSWORD}", f"-o{out}", str(package)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    video = out / Path(ready.output_path).name
    assert video.read_bytes() == (task_folder(ready) / video.name).read_bytes()
    done = subprocess.run([sys.executable, "-I", str(out / "verify.py")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "VERDICT: INTACT" in done.stdout, done.stdout
    wrong = subprocess.run([SEVEN_ZIP, "t", "-pnot-the-password", str(package)],
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0
    assert "Wrong password" in wrong.stdout + wrong.stderr


def test_server_checks_a_protected_package_with_its_password_and_names_a_wrong_one(
    ready, alice, tmp_path
):
    from exports import evidence_check

    package = protected_package(alice, ready, tmp_path)
    ok, lines = evidence_check.check_path(package, password=PASSWORD)
    assert ok, lines
    ok, lines = evidence_check.check_path(package, password="wrong")
    assert not ok and "the password is wrong for this package" in lines[0]
    ok, lines = evidence_check.check_path(package)
    assert not ok and "the package is password-protected" in lines[0]
    plain = tmp_path / "plain.zip"
    plain.write_bytes(package_bytes(alice, ready))
    ok, lines = evidence_check.check_path(plain, password=PASSWORD)
    assert ok and "this package is not password-protected" in lines[0]
    # The offline script names the encryption instead of failing obscurely.
    done = subprocess.run([sys.executable, "-I", verify.__file__, str(package)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "password-protected" in done.stdout


def test_aes_member_altered_inside_the_package_is_caught(ready, alice, tmp_path):
    from exports import evidence_check

    package = protected_package(alice, ready, tmp_path)
    data = bytearray(package.read_bytes())
    with zipfile.ZipFile(package) as archive:
        info = archive.getinfo(Path(ready.output_path).name)
    data[info.header_offset + 200] ^= 0x01  # inside the encrypted video
    package.write_bytes(bytes(data))
    ok, lines = evidence_check.check_path(package, password=PASSWORD)
    assert not ok
    assert "differs from the exported one" in "\n".join(lines) or "was altered" in lines[0]


def test_counter_mode_matches_winzip_little_endian_counter():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from exports.evidence_zip import CounterCipher

    key = bytes(range(32))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    expected = b"".join(ecb.update(n.to_bytes(16, "little")) for n in range(1, 70))
    cipher = CounterCipher(key)
    data = bytes(69 * 16)
    pieces = [cipher.apply(data[a:b]) for a, b in ((0, 5), (5, 21), (21, 1000), (1000, 1104))]
    assert b"".join(pieces) == expected[:1104]


# -- the pages --------------------------------------------------------------------------------


def page_client(user, **options):
    from django.test import Client

    client = Client(**options)
    client.force_login(user)
    return client


def test_task_page_offers_the_package_and_a_protected_one(ready, users, tmp_path):
    client = page_client(users["alice"])
    detail = client.get(f"/tasks/{ready.id}/").content.decode()
    assert f"/tasks/{ready.id}/package/" in detail
    response = client.get(f"/tasks/{ready.id}/package/")
    assert response.status_code == 200
    ok, verdict = check_bytes(b"".join(response.streaming_content))
    assert ok, verdict
    response = client.post(f"/tasks/{ready.id}/package/", {"password": PASSWORD})
    package = tmp_path / "p.zip"
    package.write_bytes(b"".join(response.streaming_content))
    with zipfile.ZipFile(package) as archive:
        assert all(i.flag_bits & 0x1 for i in archive.infolist())
    assert page_client(users["bob"]).get(f"/tasks/{ready.id}/package/").status_code == 404
    events = AuditEvent.objects.filter(task_id=ready.id, action="download")
    assert events.count() == 2 and all(e.detail["package"] for e in events)
    assert not any(PASSWORD in json.dumps(e.detail) for e in AuditEvent.objects.all())


def test_batch_package_holds_each_task_in_a_folder(
    alice, users, exports_queue, django_capture_on_commit_callbacks
):
    first = export(alice, django_capture_on_commit_callbacks, exports_queue)
    second = export(alice, django_capture_on_commit_callbacks, exports_queue,
                    CameraId="1", From=psim(T0), To=psim(T0 + timedelta(seconds=2)))
    ExportTask.objects.filter(id__in=[first.id, second.id]).update(batch=first.id)
    response = page_client(users["alice"]).get(f"/tasks/batch/{first.id}/package/")
    data = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifests = [n for n in archive.namelist() if n.endswith("/manifest.json")]
    assert len(manifests) == 2
    ok, verdict = check_bytes(data)
    assert ok and verdict.count("signature valid") == 2, verdict


def test_verify_page_gives_a_verdict_for_packages_videos_and_garbage(ready, alice, users):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = page_client(users["alice"])
    assert client.get("/verify/").status_code == 200
    data = package_bytes(alice, ready)
    video = Path(ready.output_path).name

    def post(content, name="evidence.zip", **extra):
        response = client.post("/verify/", {"upload": SimpleUploadedFile(name, content), **extra})
        assert response.status_code == 200
        return response.content.decode()

    assert "VERDICT: INTACT" in post(data)
    tampered = _replace_member(data, video, lambda c: _flip(c, 300))
    page = post(tampered)
    assert "VERDICT: NOT INTACT" in page and f"the video {video} differs" in page
    assert "not a complete zip file" in post(data[:-100])
    assert "VERDICT: NOT CHECKED" in post(b"PK\x03\x04" + bytes(300))
    assert "no export you may see has this SHA-256" in post(b"\x00garbage" * 50, "x.mp4")
    original = (task_folder(ready) / video).read_bytes()
    assert "VERDICT: MATCHES AN EXPORT OF THIS SERVER" in post(original, video)
    assert "this package is not password-protected" in post(data, password="x")
    folder = task_folder(ready)
    page = post(original, video,
                manifest=SimpleUploadedFile("manifest.json", (folder / "manifest.json").read_bytes()),
                signature=SimpleUploadedFile("manifest.sig", (folder / "manifest.sig").read_bytes()))
    assert "VERDICT: INTACT" in page


def test_verify_page_names_a_wrong_password_and_refuses_a_huge_upload(
    ready, alice, users, tmp_path, monkeypatch
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from exports import evidence_views

    client = page_client(users["alice"])
    package = protected_package(alice, ready, tmp_path).read_bytes()

    def post(**extra):
        return client.post("/verify/", {"upload": SimpleUploadedFile("p.zip", package), **extra})

    assert "VERDICT: INTACT" in post(password=PASSWORD).content.decode()
    assert "the password is wrong for this package" in post(password="nope").content.decode()
    assert "is password-protected" in post().content.decode()
    monkeypatch.setattr(evidence_views, "VERIFY_MAX_UPLOAD_BYTES", 1000)
    response = post()
    assert response.status_code == 413 and "larger than" in response.content.decode()


def test_verify_page_needs_login_and_csrf(ready, users):
    from django.test import Client

    assert Client().get("/verify/").status_code == 302
    strict = page_client(users["alice"], enforce_csrf_checks=True)
    assert strict.post("/verify/", {}).status_code == 403


def test_api_status_offers_a_signed_package_url(ready, alice):
    from django.test import Client

    url = alice.status(ready.id).json()["PackageUrl"]
    response = Client().get(url)  # no credentials: the signature is the access
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    ok, verdict = check_bytes(b"".join(response.streaming_content))
    assert ok, verdict
    assert AuditEvent.objects.filter(task_id=ready.id, action="download",
                                     detail__via="signed link").exists()


def test_a_manifest_with_non_ascii_text_is_signed_and_checked_byte_exact(ready, tmp_path):
    manifest = json.loads((task_folder(ready) / "manifest.json").read_bytes())
    manifest["camera"]["name"] = "Café Øst — 入口"
    data = verify.canonical_json(manifest)
    assert "入口".encode() in data  # UTF-8, not \\u escapes
    key_id, signature = signing_keys.sign(data)
    signed = verify.canonical_json({"algorithm": "Ed25519", "key_id": key_id,
                                    "signature": signature.hex()})
    report = verify.Report("manifest.json")
    verify.check_manifest(report, data, signed, signing_keys.trusted_keys())
    assert report.ok, report.checks
    report = verify.Report("manifest.json")
    verify.check_manifest(report, data.replace("入口".encode(), "出口".encode()), signed,
                          signing_keys.trusted_keys())
    assert not report.ok


def test_an_export_whose_manifest_cannot_be_signed_fails_with_a_clear_message(
    alice, exports_queue, django_capture_on_commit_callbacks, settings, tmp_path
):
    broken = tmp_path / "key.pem"
    broken.write_text("not a key")
    settings.PSIMEXPORT_SIGNING_KEY_FILE = str(broken)
    with django_capture_on_commit_callbacks(execute=True):
        task_id = alice.create(**RANGE).json()["ArchiveTaskId"]
    run_worker(exports_queue)
    task = ExportTask.objects.get(id=task_id)
    assert task.state == "Failed"
    assert task.error_message.startswith("the export's manifest cannot be signed: the signing key")
    assert not task_folder(task).exists()  # no file that looks finished
