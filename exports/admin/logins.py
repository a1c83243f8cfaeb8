"""Failed sign-ins (exports/throttle.py records them), for staff with view_loginfailure."""

from django.contrib import admin

from exports.admin.readonly import ReadOnlyAdmin
from exports.models import LoginFailure


@admin.register(LoginFailure)
class LoginFailureAdmin(ReadOnlyAdmin):
    list_display = ("at", "kind", "username", "remote_addr", "limit_reached")
    list_filter = ("kind", "limit_reached")
    search_fields = ("username", "remote_addr")
    date_hierarchy = "at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]
