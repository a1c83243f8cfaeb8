"""django-rq's queue dashboards, for superusers only.

django-rq guards its views with the staff flag alone, and they can empty, delete and requeue
jobs and stop running exports. Both places it is served (/admin/rq/ and the admin's own
"Django RQ" entry) are wrapped here, so a staff user with only task or camera permissions
can neither see nor control the queues.
"""

from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import URLPattern
from django_rq import models as rq_models
from django_rq.admin import QueueAdmin


def may_control_queues(user) -> bool:
    return user.is_active and user.is_superuser


def superusers_only(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), "admin:login")
        if not may_control_queues(request.user):
            raise PermissionDenied("the job queues are for superusers")
        return view(request, *args, **kwargs)

    return wrapper


def superusers_only_patterns(patterns):
    """The same URL patterns, each view wrapped by superusers_only."""
    return [
        URLPattern(p.pattern, superusers_only(p.callback), p.default_args, p.name)
        for p in patterns
    ]


class SuperuserQueueAdmin(QueueAdmin):
    def has_module_permission(self, request):
        return may_control_queues(request.user)

    def has_view_permission(self, request, obj=None):
        return may_control_queues(request.user)

    def has_change_permission(self, request, obj=None):
        return may_control_queues(request.user)

    def get_urls(self):
        return superusers_only_patterns(super().get_urls())


if admin.site.is_registered(rq_models.Dashboard):
    admin.site.unregister(rq_models.Dashboard)
admin.site.register(rq_models.Dashboard, SuperuserQueueAdmin)
