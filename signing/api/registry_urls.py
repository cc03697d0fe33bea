"""Routes signing adds under /api/v1/registry/: TCR's per-tag sign. Included by
``config/urls.py`` before registry's own routes (the registry app never imports signing,
and config imports no app's views)."""

from django.urls import path

from signing.api.views.sign import SignTagView

urlpatterns = [
    path("tags/<int:tag_id>/sign/", SignTagView.as_view(), name="registry-tag-sign"),
]
