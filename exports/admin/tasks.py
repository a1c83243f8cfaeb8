"""Admin for export tasks (read-only, with cancel/delete), the audit trail and API tokens."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from exports import audit_chain
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
        "short_id", "camera", "time_range", "format_options", "state", "size_display",
        "case", "requested_by", "source", "created_at",
    )
    list_filter = ("state", "keep", "format", "source", "overlay", "camera")
    search_fields = (
        "id", "camera__camera_id", "camera__name", "requested_by__username",
        "case_name", "case_comment",
    )
    date_hierarchy = "created_at"
    actions = ("cancel_tasks", "delete_files", "set_hold", "release_hold")
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

    @admin.display(description="state", ordering="state")
    def state(self, task):
        """The state, with the progress while queued or running (one column: room for the
        case column on a laptop)."""
        label = task.get_state_display()
        return f"{label} {task.percents} %" if task.is_active else label

    @admin.display(description="case", ordering="case_name")
    def case(self, task):
        """The case name (shortened; the full one is its title) and the legal hold, in one
        narrow column so the list still fits a laptop."""
        if not (task.case_name or task.keep):
            return "—"
        name = task.case_name if len(task.case_name) <= 24 else task.case_name[:23] + "…"
        hold = format_html('<strong title="{}">held</strong> ', "legal hold") if task.keep else ""
        return format_html('{}<span title="{}">{}</span>', hold, task.case_name, name)

    @admin.display(description="format", ordering="format")
    def format_options(self, task):
        """The format and, in few letters, the options (in full on hover): the list must
        still fit a 1366 px screen."""
        short = " ".join([task.format] + ["overlay"] * task.overlay + [f"{task.speed}×"] * bool(task.speed))
        return format_html('<span title="{}">{}</span>', task.options_text or task.format, short)

    @admin.display(description="size")
    def size_display(self, task):
        """The size, and how an export option shaped the files (parts, their limit, a mosaic):
        one column, so the list still fits a laptop."""
        size = filesizeformat(task.size) if task.size else "—"
        notes = []
        if len(task.parts or []) > 1:
            notes.append(f"{len(task.parts)} parts")
        if task.max_file_size:
            notes.append(f"≤ {filesizeformat(task.max_file_size)} each")
        if task.mosaic:
            notes.append(f"mosaic {task.mosaic}")
        return f"{size} ({', '.join(notes)})" if notes else size

    @admin.display(description="job queue")
    def queue_link(self, task):
        return format_html('<a href="{}">rq queues and workers</a>', RQ_ADMIN_URL)

    # Each action needs its own permission (the rows stay read-only either way): cancelling
    # changes a task, removing its file deletes evidence.
    def has_cancel_permission(self, request):
        return request.user.has_perm("exports.change_exporttask")

    def has_delete_files_permission(self, request):
        return request.user.has_perm("exports.delete_exporttask")

    def has_keep_permission(self, request):
        return service.may_keep(request.user)

    @admin.action(
        description="Cancel selected queued or running tasks", permissions=["cancel"]
    )
    def cancel_tasks(self, request, queryset):
        active = queryset.filter(state__in=ExportTask.ACTIVE_STATES)
        self._apply(request, active, service.cancel_task, "cancelled")

    @admin.action(
        description="Delete the files of selected tasks (cancels active ones)",
        permissions=["delete_files"],
    )
    def delete_files(self, request, queryset):
        self._apply(request, queryset, service.delete_task, "deleted")

    @admin.action(description="Set the legal hold of selected tasks", permissions=["keep"])
    def set_hold(self, request, queryset):
        keep = lambda task, user, addr: service.set_keep(task, True, user, addr)  # noqa: E731
        self._apply(request, queryset, keep, "put under legal hold")

    @admin.action(description="Release the legal hold of selected tasks", permissions=["keep"])
    def release_hold(self, request, queryset):
        release = lambda task, user, addr: service.set_keep(task, False, user, addr)  # noqa: E731
        self._apply(request, queryset, release, "released from legal hold")

    def _apply(self, request, queryset, change, done: str) -> None:
        """Run a service change on each task; refusals (a legal hold) are listed, not fatal."""
        count, refused = 0, []
        for task in queryset.select_related("camera"):
            try:
                change(task, request.user, client_addr(request))
                count += 1
            except service.TaskRefused as refusal:
                refused.append(refusal.message)
        self.message_user(request, f"{count} task(s) {done}.", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.ERROR)

    def changelist_view(self, request, extra_context=None):
        # The job queue is linked from each task's page ("job queue"), not from the title.
        extra_context = {**(extra_context or {}), "title": "Export tasks"}
        return super().changelist_view(request, extra_context)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "seq", "action", "camera_id", "task_id", "username", "remote_addr")
    list_filter = ("action", "camera_id")
    search_fields = ("task_id", "camera_id", "username", "remote_addr")
    date_hierarchy = "at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def get_urls(self):
        from django.urls import path

        check = self.admin_site.admin_view(self.check_chain_view)
        return [path("check/", check, name="exports_auditevent_check"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        from exports.models import AuditChainHead

        extra_context = {
            **(extra_context or {}),
            "chain_check": audit_chain.last_check(),
            "chain_head": AuditChainHead.objects.filter(pk=1).first(),
        }
        return super().changelist_view(request, extra_context)

    def check_chain_view(self, request):
        """Queue a full walk of the chain in a worker; its result shows on the list."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            audit_chain.enqueue_check()
        except Exception as error:  # noqa: BLE001 - Redis away: say so, don't 500
            self.message_user(request, f"Cannot queue the check: {error}", messages.ERROR)
        else:
            self.message_user(
                request, "Chain check queued; reload this page in a moment for its result.",
                messages.SUCCESS,
            )
        return redirect("admin:exports_auditevent_changelist")


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
