"""URLs of the web pages."""

from django.urls import path

from exports import evidence_views, review, views

urlpatterns = [
    path("", views.cameras, name="cameras"),
    # <path:>: ids from before camera ids were limited may hold a "/" and must still link.
    path("cameras/<path:camera_id>/thumbnail.jpg", views.camera_thumbnail, name="camera-thumbnail"),
    path("cameras/<path:camera_id>/review/", review.review, name="review"),
    path("cameras/<path:camera_id>/review/index.json", review.review_index, name="review-index"),
    path("cameras/<path:camera_id>/review/frame.jpg", review.review_frame, name="review-frame"),
    path(
        "cameras/<path:camera_id>/review/piece/<int:segment_id>/<int:index>.mp4",
        review.review_piece, name="review-piece",
    ),
    path("export/", views.export, name="export"),
    path("export/preview/", views.export_preview, name="export-preview"),
    path("tasks/", views.task_list, name="tasks"),
    path("tasks/progress/", views.task_progress, name="task-progress"),
    path("tasks/batch/<uuid:batch_id>/zip/", views.batch_zip, name="batch-zip"),
    path("tasks/<uuid:task_id>/", views.task_detail, name="task-detail"),
    path("tasks/<uuid:task_id>/download/", views.task_download, name="task-download"),
    path("tasks/<uuid:task_id>/parts.zip", views.task_parts_zip, name="task-parts-zip"),
    path("tasks/<uuid:task_id>/play/", views.task_play, name="task-play"),
    path("tasks/<uuid:task_id>/cancel/", views.task_cancel, name="task-cancel"),
    path("tasks/<uuid:task_id>/delete/", views.task_delete, name="task-delete"),
    path("tasks/<uuid:task_id>/retry/", views.task_retry, name="task-retry"),
    path("tasks/<uuid:task_id>/keep/", views.task_keep, name="task-keep"),
    path("preferences/", views.preferences, name="preferences"),
    path("tasks/<uuid:task_id>/package/", evidence_views.task_package, name="task-package"),
    path("tasks/batch/<uuid:batch_id>/package/", evidence_views.batch_package,
         name="batch-package"),
    path("verify/", evidence_views.verify_page, name="verify"),
    path(".well-known/psimexport-keys.json", evidence_views.well_known_keys, name="signing-keys"),
]
