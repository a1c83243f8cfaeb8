"""Admin for export tasks (read-only, with cancel/delete), the audit trail and API tokens."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from exports import tasks as service
from exports.admin.readonly import ReadOnlyAdmin
from exports.auth import client_addr
from exports.models import ApiToken, AuditEvent, ExportTask

RQ_ADMIN_URL = "/admin/rq/"  # django-rq's dashboard, mounted in psimexport/urls.py


@admin.register(ExportTask)
class ExportTaskAdmin(admin.ModelAdmin):
    # Narrow columns, so the list fits a 1366 px laptop: a short id (the full one is its
    # title), the range in one column with seconds, the end's date only when it differs.
    list_display = (
        "short_id", "camera", "time_range", "format_options", "state", "percents",
        "size_display", "requested_by", "source", "created_at",
    )
    list_filter = ("state", "format", "source", "overlay", "camera")
    search_fields = ("id", "camera__camera_id", "camera__name", "requested_by__username")
    date_hierarchy = "created_at"
    actions = ("cancel_tasks", "delete_files")
    list_select_related = ("camera", "requested_by")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields] + ["queue_link"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # rows are the chain of custody; "delete files" keeps the row

    @admin.display(description="task", ordering="id")
    def short_id(self, task):
        return format_html('<span title="{}">{}</span>', task.id, str(task.id)[:8])

    @admin.display(description="range", ordering="start")
    def time_range(self, task):
        from exports.templatetags.pages import span_text

        return span_text(task.start, task.end)

    @admin.display(description="format", ordering="format")
    def format_options(self, task):
        """The format and, in few letters, the options (in full on hover): the list must
        still fit a 1366 px screen."""
        short = " ".join([task.format] + ["overlay"] * task.overlay + [f"{task.speed}×"] * bool(task.speed))
        return format_html('<span title="{}">{}</span>', task.options_text or task.format, short)

    @admin.display(description="size")
    def size_display(self, task):
        return filesizeformat(task.size) if task.size else "—"

    @admin.display(description="job queue")
    def queue_link(self, task):
        return format_html('<a href="{}">rq queues and workers</a>', RQ_ADMIN_URL)

    # Each action needs its own permission (the rows stay read-only either way): cancelling
    # changes a task, removing its file deletes evidence.
    def has_cancel_permission(self, request):
        return request.user.has_perm("exports.change_exporttask")

    def has_delete_files_permission(self, request):
        return request.user.has_perm("exports.delete_exporttask")

    @admin.action(
        description="Cancel selected queued or running tasks", permissions=["cancel"]
    )
    def cancel_tasks(self, request, queryset):
        count = 0
        for task in queryset.filter(state__in=ExportTask.ACTIVE_STATES):
            service.cancel_task(task, request.user, client_addr(request))
            count += 1
        self.message_user(request, f"{count} task(s) cancelled.", messages.SUCCESS)

    @admin.action(
        description="Delete the files of selected tasks (cancels active ones)",
        permissions=["delete_files"],
    )
    def delete_files(self, request, queryset):
        for task in queryset:
            service.delete_task(task, request.user, client_addr(request))
        self.message_user(request, f"{queryset.count()} task(s) deleted.", messages.SUCCESS)

    def changelist_view(self, request, extra_context=None):
        # The job queue is linked from each task's page ("job queue"), not from the title.
        extra_context = {**(extra_context or {}), "title": "Export tasks"}
        return super().changelist_view(request, extra_context)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "camera_id", "task_id", "username", "remote_addr")
    list_filter = ("action", "camera_id")
    search_fields = ("task_id", "camera_id", "username", "remote_addr")
    date_hierarchy = "at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at")
    search_fields = ("prefix", "name", "user__username")
    fields = ("user", "name", "prefix", "created_at", "last_used_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("user",) if obj else ())

    # A token acts as its user: staff may hold and mint tokens only for themselves, so the
    # add_apitoken permission never lets anyone act as somebody else. Superusers manage all.
    def get_queryset(self, request):
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if obj.user_id != request.user.pk and not request.user.is_superuser:
            raise PermissionDenied("a token may be minted only for yourself")
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = ApiToken.issue(obj.user, name=obj.name)
        obj.pk, obj.key_hash, obj.prefix = token.pk, token.key_hash, token.prefix
        obj._state.adding = False
        self.message_user(
            request,
            format_html(
                "New API key (shown only now, copy it): <code>{}</code>", key
            ),
            messages.WARNING,
        )
