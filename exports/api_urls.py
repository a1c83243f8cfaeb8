"""URLs of the PSIM JSON API."""

urlpatterns = []
