"""Admin for cameras and segments (cameras.py), tasks, audit and tokens (tasks.py), failed
sign-ins (logins.py), the job queues (queues.py, superusers only) and the manifest signing
keys (signing_keys.py)."""

from django.contrib import admin

from exports.admin import cameras, logins, queues, signing_keys, tasks  # noqa: F401

# Presentation only. The app list on the left of every admin page takes 300 px a 1366 px
# laptop needs for the task list; the admin's home page lists the same models.
admin.site.enable_nav_sidebar = False
admin.site.site_header = "psimexport administration"
admin.site.site_title = "psimexport admin"
