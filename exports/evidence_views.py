"""Pages and endpoints of the evidence features: the public keys, evidence packages from the
pages (a task, a batch), and the /verify/ page."""

import hashlib
import tempfile
import uuid
from pathlib import Path

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from exports import evidence_check, signing_keys, tasks
from exports.auth import client_addr
from exports.download import DownloadUnavailable
from exports.evidence_package import package_response, task_files
from exports.models import AuditEvent, ExportTask

# An upload to /verify/ beyond this is refused before it is read (413); bigger exports are
# checked with manage.py verify_export or the package's own verify.py.
VERIFY_MAX_UPLOAD_BYTES = 2 * 1024**3


def well_known_keys(request):
    """Public keys, current, retired and revoked: public material, no login needed."""
    response = JsonResponse(signing_keys.published_keys(), json_dumps_params={"indent": 1})
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response


class PackagePasswordForm(forms.Form):
    password = forms.CharField(
        required=False, max_length=200, strip=False, widget=forms.PasswordInput,
        help_text="Optional: encrypts the zip with AES-256 (open it with 7-Zip). Never stored.",
    )


def _send(request, items, stem):
    password = None
    if request.method == "POST":
        form = PackagePasswordForm(request.POST)
        if not form.is_valid():
            return HttpResponseBadRequest("The password may have at most 200 characters.")
        password = form.cleaned_data["password"] or None
    for task, _files in items:
        tasks.record_audit(task, AuditEvent.Action.DOWNLOAD, request.user, client_addr(request),
                           via="page", package=True)
    return package_response(items, stem, password)


@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
def task_package(request, task_id):
    """One task's evidence package (POST with a password: encrypted)."""
    task = get_object_or_404(tasks.visible_tasks(request.user), id=task_id)
    try:
        items = [(task, task_files(task))]
    except DownloadUnavailable as unavailable:
        return render(request, "exports/unavailable.html",
                      {"task": task, "message": unavailable.message}, status=unavailable.status)
    return _send(request, items, Path(task.output_path).stem)


@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
def batch_package(request, batch_id):
    """Every finished task of a batch (that the user may see) in one evidence package."""
    items = []
    for task in (tasks.visible_tasks(request.user)
                 .filter(batch=batch_id, state=ExportTask.State.READY)
                 .order_by("camera__camera_id", "start")):
        try:
            items.append((task, task_files(task)))
        except DownloadUnavailable:
            continue
    if not items:
        raise Http404("No finished export with a signed manifest in this batch.")
    return _send(request, items, f"batch-{batch_id}")


# -- /verify/ ---------------------------------------------------------------------------------


class VerifyForm(forms.Form):
    upload = forms.FileField(label="Evidence package (zip) or video file")
    manifest = forms.FileField(label="manifest.json (with a video)", required=False)
    signature = forms.FileField(label="manifest.sig (with a video)", required=False)
    password = forms.CharField(
        label="Package password", required=False, max_length=200, strip=False,
        widget=forms.PasswordInput(render_value=False),
    )


@sensitive_post_parameters("password")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def verify_page(request):
    form, verdict = VerifyForm(), None
    if request.method == "POST":
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > VERIFY_MAX_UPLOAD_BYTES:
            return render(request, "exports/verify.html", {
                "form": form, "nav": "verify",
                "too_big": f"The upload is larger than {filesizeformat(VERIFY_MAX_UPLOAD_BYTES)}: "
                           "check it with the package's verify.py or manage.py verify_export.",
            }, status=413)
        form = VerifyForm(request.POST, request.FILES)
        if form.is_valid():
            verdict = _verdict(request, form.cleaned_data)
    return render(request, "exports/verify.html", {"form": form, "verdict": verdict,
                                                   "nav": "verify"})


def _verdict(request, data) -> dict:
    with tempfile.TemporaryDirectory(prefix="psimexport-verify-") as work:
        work = Path(work)
        upload = _save(data["upload"], work / f"upload-{uuid.uuid4().hex}")
        manifest = None
        if data["manifest"]:
            manifest = _save(data["manifest"], work / "manifest.json")
            if data["signature"]:
                _save(data["signature"], work / "manifest.sig")
        if manifest is None and not evidence_check.looks_like_zip(upload):
            return _identify(request, upload)
        ok, lines = evidence_check.check_path(upload, manifest, data["password"] or None)
    return {"ok": ok, "lines": lines}


def _save(uploaded, path: Path) -> Path:
    with open(path, "wb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return path


def _identify(request, path: Path) -> dict:
    """A file without a manifest: is it an export of this server the user may see?"""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    sha = digest.hexdigest()
    task = tasks.visible_tasks(request.user).filter(sha256=sha).order_by("-finished_at").first()
    if task is None:
        return {"ok": False, "lines": [
            f"This file (SHA-256 {sha}) is not a zip package, and no export you may see has "
            "this SHA-256. To check a video, give its manifest.json and manifest.sig too.",
            "VERDICT: NOT CHECKED."]}
    return {"ok": True, "lines": [f"This file (SHA-256 {sha}) is exactly the export of task {task.id} (camera "
            f"{task.camera.camera_id}, {task.start:%Y-%m-%d %H:%M:%S}–{task.end:%H:%M:%S} UTC, "
            f"finished {task.finished_at:%Y-%m-%d %H:%M:%S} UTC). For a signed statement, "
            "check its evidence package.", "VERDICT: MATCHES AN EXPORT OF THIS SERVER."]}
