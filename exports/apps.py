from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Archive exports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from exports import login  # noqa: F401 (counts failed sign-ins: user_login_failed)
