"""The signed manifest of a finished export: what was exported, from which recorded files, for
whom; canonical JSON signed with Ed25519 (exports.signing_keys), checked by exports.verify.

Written by the worker when the export finishes, beside the file in the task's folder
(`manifest.json`, `manifest.sig`), before the task is marked ready.
"""

from datetime import UTC
from importlib import metadata
from pathlib import Path

from exports import signing_keys, source_hashes
from exports.verify import MANIFEST, MANIFEST_FORMAT, PARTS_FORMAT, SIGNATURE, canonical_json


def iso(moment) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


def product_version() -> str:
    try:
        return metadata.version("psimexport")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_manifest(task, result, file_name: str, size: int, digest: str, sources, key_id, now):
    """The manifest as a dict (see README, "Evidence")."""
    gaps = [
        {"from": iso(start), "to": iso(end), "reason": reason}
        for (start, end), reason in zip(
            result.gaps, list(result.gap_reasons) + [""] * len(result.gaps), strict=False
        )
    ]
    user = task.requested_by
    manifest = {
        "format": MANIFEST_FORMAT,
        "product": {"name": "psimexport", "version": product_version()},
        "task": {"id": str(task.id), "batch": str(task.batch) if task.batch else None,
                 "format": task.format, "via": task.source},
        "camera": {"id": task.camera.camera_id, "name": task.camera.display_name},
        "requested": {"from": iso(task.requested_from), "to": iso(task.requested_to),
                      "range_from": iso(task.start), "range_to": iso(task.end)},
        "recorded": {
            "first_frame": iso(result.first_frame),
            "last_frame": iso(result.last_frame),
            "frames": result.frames,
            "duration_ms": round(result.duration_s * 1000),
            "gaps": gaps,
            "skipped": list(result.skipped),
        },
        "technique": result.technique,
        "streams": result.streams,
        "output": {"file_name": file_name, "size": size, "sha256": digest},
        "sources": sources,
        "requested_by": {
            "user": user.get_username() if user is not None else None,
            "address": task.remote_addr,
            "at": iso(task.created_at),
        },
        "case": {"name": task.case_name, "comment": task.case_comment, "keep": task.keep},
        "exported_at": iso(now),
        "signing_key_id": key_id,
    }
    parts = signed_parts(result)
    if parts:  # `output` stays the first part, as the task's Url and sha256 are
        manifest.update(format=PARTS_FORMAT, parts=parts)
    return manifest


def signed_parts(result) -> list[dict]:
    """Every part of an export in parts (exports.parts.PartedResult), in order, with its
    range; [] for an export in one piece."""
    return [
        {"file_name": part["file"], "size": part["bytes"], "sha256": part["sha256"],
         "from": iso(start), "to": iso(end), "frames": part["frames"]}
        for part, (start, end) in zip(getattr(result, "parts", []),
                                      getattr(result, "spans", []), strict=True)
    ]


def manifest_paths(video: Path, beside: bool = False) -> tuple[Path, Path]:
    """Where a video's manifest and signature go: the task folder's manifest.json and
    manifest.sig, or `<video>.manifest.json` / `.sig` beside a file of the command line."""
    if beside:
        return (video.with_name(video.name + ".manifest.json"),
                video.with_name(video.name + ".manifest.sig"))
    return video.with_name(MANIFEST), video.with_name(SIGNATURE)


def write_signed_manifest(task, result, video: Path, size, digest, now, beside=False, tick=None):
    """Hash the sources, build, sign and write the manifest next to `video`; returns the two
    paths written."""
    sources = source_hashes.describe_sources(
        task.camera, result.sources, tick=tick, hashed=getattr(result, "source_hashes", None)
    )
    key_id = signing_keys.current_key_id()
    manifest = build_manifest(task, result, video.name, size, digest, sources, key_id, now)
    data = canonical_json(manifest)
    signed_by, signature = signing_keys.sign(data)
    if signed_by != key_id:  # rotated in between: build again under the new id
        return write_signed_manifest(task, result, video, size, digest, now, beside, tick)
    manifest_path, sig_path = manifest_paths(video, beside)
    manifest_path.write_bytes(data)
    sig_path.write_bytes(canonical_json(
        {"algorithm": "Ed25519", "key_id": key_id, "signature": signature.hex()}
    ))
    return [manifest_path, sig_path]
