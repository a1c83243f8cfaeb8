"""The public keys that sign export manifests, as /.well-known/psimexport-keys.json lists them.
Read-only: keys are made by `manage.py rotate_signing_key` (which also revokes)."""

from django.contrib import admin

from exports.admin.readonly import ReadOnlyAdmin
from exports.models import SigningKey


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "status", "created_at", "retired_at", "revoked_at")
    fields = ("key_id", "status", "public_key", "created_at", "retired_at", "revoked_at",
              "revoked_reason")
    readonly_fields = fields
    search_fields = ("key_id", "public_key")

    @admin.display(description="status")
    def status(self, key):
        return key.status
