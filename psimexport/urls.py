from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("exports.api_urls")),
    path("", include("exports.page_urls")),
]

# Errors raised before a view runs answer JSON on API paths, Django's pages elsewhere.
handler400 = "exports.api.handler400"
handler404 = "exports.api.handler404"
handler500 = "exports.api.handler500"
