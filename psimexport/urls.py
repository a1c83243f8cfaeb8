import django_rq.urls
from django.contrib import admin
from django.urls import include, path

from exports import login
from exports.admin.queues import superusers_only_patterns

admin.autodiscover()  # settings use SimpleAdminConfig: the site is filled here, for the web

urlpatterns = [
    # Both logins with the failed sign-in limits (429 + Retry-After), ahead of Django's own.
    path("admin/login/", login.admin_login),
    path("accounts/login/", login.login_page, name="login"),
    # django-rq's views check only the staff flag: the queues are for superusers.
    path(
        "admin/rq/",
        include((superusers_only_patterns(django_rq.urls.urlpatterns), "django_rq")),
    ),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("exports.api_urls")),
    path("", include("exports.page_urls")),
]

# Errors raised before a view runs answer JSON on API paths, Django's pages elsewhere.
handler400 = "exports.api.handler400"
handler404 = "exports.api.handler404"
handler500 = "exports.api.handler500"
