"""Cameras, the index of their recorded segments, export tasks and their audit trail."""

import hashlib
import re
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

# Camera ids go into URLs, file names and log lines: letters, digits and . _ : @ -, starting
# with a letter or digit. (Cameras made before this rule keep working; they just can't be
# created any more.)
CAMERA_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")


def validate_camera_id(value: str) -> None:
    if not isinstance(value, str) or not CAMERA_ID_PATTERN.fullmatch(value):
        raise ValidationError(
            f"{str(value)[:70]!r} is not a usable camera id: use up to 64 letters, digits and "
            ". _ : @ -, starting with a letter or digit"
        )


class CameraQuerySet(models.QuerySet):
    def restrict(self, user):
        """The one rule of who may export what (as NetBox's RestrictedQuerySet.restrict):
        enabled cameras, all of them for superusers and the anonymous API caller (when
        PSIMEXPORT_ALLOW_ANONYMOUS lets one in), else those granted to the user directly or
        through one of their groups. Nobody else gets any. Pages, API, forms and tasks all
        filter through here; a single camera is `.restrict(user).filter(...)`, one query.
        A flat join (not a nested subquery): the hot API paths ask it for one camera per
        request, and this is the shape the database and the ORM handle fastest.
        """
        if getattr(user, "is_api_anonymous", False):
            return self.filter(enabled=True)
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.filter(enabled=True)
        granted = Q(allowed_users=user) | Q(allowed_groups__user=user)
        return self.filter(granted, enabled=True).distinct()

    exportable_by = restrict  # the name the pages have used; the same rule


class Camera(models.Model):
    class Layout(models.TextChoices):
        AUTO = "auto", "Detect from file names"
        FRIGATE = "frigate", "Frigate (YYYY-MM-DD/HH/<camera>/MM.SS.mp4)"
        PATTERN = "pattern", "strftime pattern"

    camera_id = models.CharField(
        "camera id", max_length=64, unique=True, help_text="The CameraId other systems send."
    )
    name = models.CharField(max_length=200, blank=True)
    archive_path = models.CharField(
        max_length=1024, help_text="Directory holding the recordings (Frigate: recordings root)."
    )
    source_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="The camera's folder name inside a shared layout; defaults to the camera id.",
    )
    layout = models.CharField(max_length=16, choices=Layout.choices, default=Layout.AUTO)
    pattern = models.CharField(
        max_length=300,
        blank=True,
        help_text="strftime path relative to the archive, e.g. %Y/%m/%d/%H-%M-%S.mkv",
    )
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA zone of the times in file names."
    )
    enabled = models.BooleanField(default=True)
    allowed_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="exportable_cameras"
    )
    allowed_groups = models.ManyToManyField(Group, blank=True, related_name="exportable_cameras")
    # The longest indexed segment bounds how far before a range a segment may start, so
    # "segments overlapping [a, b)" is one range scan on (camera, start).
    max_segment_seconds = models.FloatField(default=0)
    indexed_at = models.DateTimeField(null=True, blank=True)
    # Coverage kept by the indexer, so lists of cameras never scan their segments.
    first_recording = models.DateTimeField(null=True, blank=True)
    last_recording = models.DateTimeField(null=True, blank=True)
    recorded_seconds = models.FloatField(default=0)
    gap_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CameraQuerySet.as_manager()

    class Meta:
        ordering = ["camera_id"]

    def __str__(self):
        return f"{self.camera_id} {self.name}".strip()

    def save(self, *args, **kwargs):
        if not self.source_name:
            self.source_name = self.camera_id
        super().save(*args, **kwargs)

    @property
    def display_name(self):
        return self.name or f"Camera {self.camera_id}"


class Segment(models.Model):
    """One recorded file of a camera's archive."""

    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="segments")
    path = models.CharField(max_length=1024, help_text="Relative to the camera's archive path.")
    start = models.DateTimeField(help_text="UTC time of the first video frame.")
    end = models.DateTimeField(help_text="UTC time at which the last video frame ends.")
    size = models.BigIntegerField()
    mtime = models.FloatField()
    video_codec = models.CharField(max_length=32)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    frame_rate = models.FloatField(default=0)
    audio_codec = models.CharField(max_length=32, blank=True)
    # False while the recorder may still be appending to the file.
    complete = models.BooleanField(default=True)
    # SHA-256 of the whole file, computed once when it is complete (exports.source_hashes);
    # valid while the file keeps the size and mtime it had then.
    sha256 = models.CharField(max_length=64, blank=True)
    sha256_size = models.BigIntegerField(null=True, blank=True)
    sha256_mtime = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["camera", "start"]
        constraints = [
            models.UniqueConstraint(fields=["camera", "path"], name="segment_unique_path"),
        ]
        indexes = [models.Index(fields=["camera", "start"], name="segment_camera_start")]

    def __str__(self):
        return self.path

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


class ExportTaskQuerySet(models.QuerySet):
    def restrict(self, user):
        """Tasks this caller may see: every task of a camera Camera.objects.restrict lets them
        export, not only their own (operators on a shift share evidence work; the camera grant
        is the access boundary); a group's mosaic only if they may export every camera of the
        group. Superusers also see tasks of disabled cameras."""
        if getattr(user, "is_superuser", False) and user.is_active:
            return self.all()
        allowed = Camera.objects.restrict(user).values("pk")
        # A mosaic shows every camera of its group: only for who may export them all.
        mixed = ExportTask.objects.filter(batch__isnull=False).exclude(camera__in=allowed)
        return self.filter(camera__in=allowed).exclude(
            ~Q(mosaic=""), batch__in=mixed.values("batch")
        )


class SegmentFrameIndex(models.Model):
    """A segment's frame index (exports.media.frameindex), so exports need not demux it again.

    Valid while the file keeps the size and mtime it had when indexed; a grown file's index is
    extended from this one.
    """

    segment = models.OneToOneField(Segment, on_delete=models.CASCADE, related_name="frame_index")
    size = models.BigIntegerField()
    mtime = models.FloatField()
    frames = models.PositiveIntegerField(default=0, help_text="Video and audio packets indexed.")
    data = models.BinaryField(help_text="SegmentIndex.to_bytes()")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"frame index of {self.segment}"


class ExportTask(models.Model):
    class State(models.TextChoices):
        CREATED = "Created"
        IN_PROGRESS = "InProgress"
        READY = "ReadyForDownload"
        FAILED = "Failed"
        CANCELLED = "Cancelled"
        DELETED = "Deleted"

    class Source(models.TextChoices):
        API = "api", "API"
        PAGE = "page", "Web page"
        COMMAND = "command", "Command line"

    ACTIVE_STATES = (State.CREATED, State.IN_PROGRESS)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    camera = models.ForeignKey(Camera, on_delete=models.PROTECT, related_name="tasks")
    batch = models.UUIDField(null=True, blank=True, db_index=True)
    requested_from = models.DateTimeField()
    requested_to = models.DateTimeField(null=True, blank=True)
    start = models.DateTimeField(help_text="Resolved UTC start of the range.")
    end = models.DateTimeField(help_text="Resolved UTC end of the range.")
    format = models.CharField(max_length=8)
    state = models.CharField(max_length=20, choices=State.choices, default=State.CREATED)
    percents = models.PositiveSmallIntegerField(default=0)
    error_message = models.TextField(blank=True)
    output_path = models.CharField(max_length=1024, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    technique = models.CharField(max_length=32, blank=True)
    gaps = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.API)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The run that claimed the task; every later write of a run is conditional on it, so a
    # stale run (one that lost its lease and was replaced) cannot touch the current one.
    attempt_id = models.UUIDField(null=True, blank=True, editable=False)
    # Case data (API `Name`, `Comment`) and legal hold (`Keep`): a kept export is exempt from
    # retention and from the disk budget's eviction until released.
    case_name = models.CharField("case name", max_length=200, blank=True)
    case_comment = models.TextField("comment", max_length=2000, blank=True)
    keep = models.BooleanField("legal hold", default=False)
    # Who put the current hold on and when (empty while not kept; the audit trail has every
    # set and release).
    kept_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", verbose_name="hold set by",
    )
    kept_at = models.DateTimeField("hold set at", null=True, blank=True)
    # Export options (issue 13). `max_file_size` (API `MaxFileSize`): the export is split into
    # parts no larger than this. `parts`: one entry per file of a task exported in parts
    # (exports/parts.py); the first is also `output_path`, what `Url` downloads.
    max_file_size = models.BigIntegerField("max file size", null=True, blank=True)
    parts = models.JSONField(default=list, blank=True)
    # "2x2" or "3x3": this task of a group (`batch`) is the mosaic of the group's other tasks'
    # cameras (exports/groups.py); its `camera` is the group's first, for the access rule.
    mosaic = models.CharField(max_length=3, blank=True, default="")
    # Picture options (API `Overlay`, `OverlayPosition`, `OverlayZone`, `OverlayMilliseconds`,
    # `Speed`; a still is `format` jpg/png). Defaults: the plain export.
    overlay = models.BooleanField(default=False, help_text="Camera name and time drawn in.")
    overlay_position = models.CharField(max_length=12, blank=True, default="top-left")
    overlay_zone = models.CharField(
        max_length=8, blank=True, default="camera", help_text="camera: the camera's zone; utc"
    )
    overlay_ms = models.BooleanField("overlay milliseconds", default=False)
    speed = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Timelapse: N times faster (2-1000); empty: real time."
    )

    objects = ExportTaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("keep_exporttask", "Can set or release the legal hold of an export"),
            ("export_unmasked", "Can export without the camera's privacy masks"),
        ]
        indexes = [
            models.Index(fields=["-created_at"], name="task_created"),
            models.Index(fields=["requested_by", "-created_at"], name="task_user_created"),
            models.Index(fields=["camera", "-created_at"], name="task_camera_created"),
            models.Index(fields=["state", "created_at"], name="task_state_created"),
        ]

    def __str__(self):
        return f"{self.camera.camera_id} {self.start:%Y-%m-%d %H:%M:%S}–{self.end:%H:%M:%S} {self.format}"

    @property
    def is_active(self):
        return self.state in self.ACTIVE_STATES

    @property
    def options_text(self) -> str:
        """The picture options in a few words ("" for a plain export)."""
        parts = []
        if self.format in ("jpg", "png"):
            parts.append(f"still ({self.format})")
        if self.overlay:
            when = "ms" if self.overlay_ms else "s"
            parts.append(f"overlay {self.overlay_position}, {self.overlay_zone} {when}")
        if self.speed:
            parts.append(f"timelapse {self.speed}×")
        return "; ".join(parts)


class AuditEvent(models.Model):
    """Chain of custody: who created, downloaded, deleted a task, and every failure; also who
    watched a camera's archive on the review page (a view: no task, nothing left the server).

    Tamper-evident: each event is appended to a hash chain (exports/audit_chain.py) when it is
    saved: `seq` is its place, `prev_hash` the hash of the event before, `hash` its own over
    its canonical fields. Events are written once and never changed.
    """

    class Action(models.TextChoices):
        CREATE = "create"
        START = "start"
        FINISH = "finish"
        FAIL = "fail"
        DOWNLOAD = "download"
        VIEW = "view"  # played in a page's player or the review page: seen, not taken away
        CANCEL = "cancel"
        DELETE = "delete"
        EXPIRE = "expire"
        RETRY = "retry"
        KEEP = "keep"  # legal hold set
        RELEASE = "release"  # legal hold released

    # Kept as a plain value (not a foreign key) so the trail outlives the task row.
    task_id = models.UUIDField(db_index=True, null=True, blank=True)
    camera_id = models.CharField(max_length=64)
    action = models.CharField(max_length=16, choices=Action.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    username = models.CharField(max_length=150, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    detail = models.JSONField(default=dict, blank=True)
    seq = models.BigIntegerField("chain position", unique=True, null=True, editable=False)
    prev_hash = models.CharField("previous hash", max_length=64, default="", editable=False)
    hash = models.CharField(max_length=64, default="", editable=False)

    class Meta:
        ordering = ["-at"]

    def save(self, *args, **kwargs):
        from exports import audit_chain

        if not self._state.adding:
            raise audit_chain.ChainError("audit events are never changed once written")
        audit_chain.append(self, *args, **kwargs)


class AuditChainHead(models.Model):
    """The one row naming the audit chain's last event. Appending locks it, so writers in
    every process take turns; its last check (verify_audit, the admin's button) is cached
    here for the admin to show."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    checked_ok = models.BooleanField(null=True)
    checked_events = models.BigIntegerField(default=0)
    checked_message = models.TextField(blank=True)

    def __str__(self):
        return f"audit chain head #{self.seq}"


class SigningKey(models.Model):
    """A public key that signs (or signed) export manifests; the private key of the current one
    lives in a file (exports.signing_keys). Rows are never deleted: retired keys still verify
    old manifests, revoked ones make them fail."""

    key_id = models.CharField("key id", max_length=32, unique=True)
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 public key, hex.")
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.key_id

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        return "retired" if self.retired_at else "current"


class ApiTokenQuerySet(models.QuerySet):
    def for_key(self, key: str):
        return self.filter(key_hash=ApiToken.hash_key(key), user__is_active=True).select_related(
            "user"
        )


class ApiToken(models.Model):
    """An API key; only its SHA-256 is stored (keys are random, so a fast hash is safe)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self):
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name: str = "") -> tuple["ApiToken", str]:
        """Create a token and return it with the plain key, which is shown once."""
        key = secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, key_hash=cls.hash_key(key), prefix=key[:8])
        return token, key


class UserPreference(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference"
    )
    time_zone = models.CharField(max_length=64, blank=True)


class LoginFailure(models.Model):
    """A failed sign-in (login page, admin, Basic or token), kept for the admin to look at."""

    class Kind(models.TextChoices):
        PAGE = "page", "login page"
        ADMIN = "admin", "admin login"
        BASIC = "basic", "API Basic"
        TOKEN = "token", "API token"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    username = models.CharField(max_length=150, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    limit_reached = models.BooleanField(
        default=False,
        help_text="This failure reached the per-minute limit: more attempts were refused (429).",
    )

    class Meta:
        ordering = ["-at"]
