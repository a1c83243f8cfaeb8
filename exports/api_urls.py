"""URLs of the PSIM JSON API (paths exactly as PSIM spells them; a trailing slash is tolerated)."""

from django.urls import re_path

from exports import api

urlpatterns = [
    re_path(r"^createarchivetask/?$", api.create_archive_task, name="api-create"),
    re_path(r"^getarchivetaskstatus/?$", api.get_archive_task_status, name="api-status"),
    re_path(r"^download/?$", api.download, name="api-download"),
    re_path(r"^deletearchivetask/?$", api.delete_archive_task, name="api-delete"),
    re_path(r"^keeparchivetask/?$", api.keep_archive_task, name="api-keep"),
    re_path(r"^getcameras/?$", api.get_cameras, name="api-cameras"),
    re_path(r"^openapi\.json$", api.openapi_document, name="api-openapi"),
    re_path(r"^healthz/?$", api.healthz, name="api-healthz"),
]
