from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the program (the segment index, the audit trail): look, don't touch."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
