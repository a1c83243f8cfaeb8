"""Admin for cameras and their segment index."""

from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from exports.admin.readonly import ReadOnlyAdmin
from exports.archive import ArchiveError, camera_zone, validate_pattern
from exports.models import Camera, Segment, validate_camera_id


class CameraForm(forms.ModelForm):
    class Meta:
        model = Camera
        fields = "__all__"

    def clean_camera_id(self):
        camera_id = self.cleaned_data["camera_id"]
        if self.instance.pk is None or camera_id != self.instance.camera_id:
            validate_camera_id(camera_id)
        return camera_id

    def clean_archive_path(self):
        path = Path(self.cleaned_data["archive_path"]).expanduser()
        if not path.is_dir():
            raise forms.ValidationError("No such directory on the server.")
        return str(path.resolve())

    def clean_timezone(self):
        zone = self.cleaned_data["timezone"]
        try:
            camera_zone(Camera(timezone=zone))
        except ArchiveError as error:
            raise forms.ValidationError(str(error)) from None
        return zone

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("layout") == Camera.Layout.PATTERN:
            try:
                validate_pattern(cleaned.get("pattern") or "")
            except ArchiveError as error:
                self.add_error("pattern", str(error))
        return cleaned


@admin.register(Camera)
class CameraAdmin(admin.ModelAdmin):
    form = CameraForm
    # Coverage comes from fields the indexer keeps, so a page of cameras costs one query.
    # Narrow columns so the list fits a 1366 px laptop: the layout's short name, first to last
    # recording in one column (the full values are on the camera's page).
    list_display = [
        "camera_id", "name", "layout_name", "enabled", "coverage", "recorded_hours",
        "gap_count", "indexed_at", "segments_link",
    ]
    list_display_links = ["camera_id", "name"]
    list_filter = ["enabled", "layout"]
    search_fields = ["camera_id", "name", "source_name", "archive_path"]
    filter_horizontal = ["allowed_users", "allowed_groups"]
    readonly_fields = [
        "first_recording", "last_recording", "recorded_hours", "gap_count",
        "max_segment_seconds", "indexed_at", "created_at",
    ]
    fieldsets = [
        (None, {"fields": ["camera_id", "name", "enabled"]}),
        ("Archive", {"fields": ["archive_path", "layout", "source_name", "pattern", "timezone"]}),
        ("Who may export", {"fields": ["allowed_users", "allowed_groups"]}),
        ("Coverage (as of the last index)", {"fields": readonly_fields}),
    ]
    actions = ["index_now"]

    @admin.display(description="layout", ordering="layout")
    def layout_name(self, camera):
        return camera.layout

    @admin.display(description="first – last recording", ordering="first_recording")
    def coverage(self, camera):
        from exports.templatetags.pages import span_text

        return span_text(camera.first_recording, camera.last_recording) or "—"

    @admin.display(description="recorded hours", ordering="recorded_seconds")
    def recorded_hours(self, camera):
        return f"{camera.recorded_seconds / 3600:.2f}"

    @admin.display(description="segments")
    def segments_link(self, camera):
        url = reverse("admin:exports_segment_changelist")
        return format_html('<a href="{}?camera__id__exact={}">list</a>', url, camera.pk)

    @admin.action(description="Index now")
    def index_now(self, request, queryset):
        """Queue the indexing (a worker does it): a large or hung archive must not hold a
        web request."""
        from redis import RedisError

        from exports.maintenance import enqueue_index

        for camera in queryset:
            try:
                enqueue_index(camera)
            except (RedisError, OSError) as error:
                self.message_user(
                    request, f"camera {camera.camera_id}: job queue unavailable ({error})",
                    messages.ERROR,
                )
                continue
            self.message_user(
                request,
                f"camera {camera.camera_id}: indexing queued; its coverage updates when a "
                "worker has done it",
                messages.SUCCESS,
            )


@admin.register(Segment)
class SegmentAdmin(ReadOnlyAdmin):
    """The index is the indexer's to write: here it can only be looked at."""

    list_display = [
        "path", "camera", "time_range", "seconds", "video", "audio_codec", "complete",
        "file_size",
    ]
    list_filter = ["camera", "video_codec", "complete"]
    list_select_related = ["camera"]
    date_hierarchy = "start"
    search_fields = ["path"]
    ordering = ["-start"]
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow

    @admin.display(description="seconds")
    def seconds(self, segment):
        return f"{segment.duration.total_seconds():.3f}"

    @admin.display(description="start – end", ordering="start")
    def time_range(self, segment):
        from exports.templatetags.pages import span_text

        return span_text(segment.start, segment.end)

    @admin.display(description="video", ordering="video_codec")
    def video(self, segment):
        # One column for codec, size and rate keeps the list within a laptop's width.
        return f"{segment.video_codec} {segment.width}×{segment.height} {segment.frame_rate:g} fps"

    @admin.display(description="bytes", ordering="size")
    def file_size(self, segment):
        return filesizeformat(segment.size)
