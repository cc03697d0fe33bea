from django.conf import settings
from django.contrib import admin
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.utils.module_loading import import_string
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from config.metrics import metrics
from config.openapi import DocsView


def health(request: HttpRequest) -> JsonResponse:
    """Liveness plus what the apps report (``HEALTH_REPORTS``); 503 when the database is
    unreachable, so a load balancer waits and the reports are never made up."""
    body: dict[str, object] = {"status": "ok"}
    try:
        for report in settings.HEALTH_REPORTS:
            body.update(import_string(report)())
    except DatabaseError:
        response = JsonResponse({"status": "unavailable", "reason": "database unreachable"})
        response.status_code = 503
        response["Retry-After"] = "5"
        return response
    return JsonResponse(body)


urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", health, name="health"),
    # Prometheus scrapes (a bearer token of its own, SIGNET_METRICS_TOKEN; config/metrics.py).
    path("metrics", metrics, name="metrics"),
    path("api/v1/kms/", include("kms.api.urls")),
    # TCR's per-tag sign, /api/v1/registry/tags/<id>/sign/: signing's route, because the
    # registry app never imports signing.
    path("api/v1/registry/", include("signing.api.registry_urls")),
    path("api/v1/registry/", include("registry.api.urls")),
    path("api/v1/signing/", include("signing.api.urls")),
    path("api/v1/audit/", include("audit.api.urls")),
    path("api/v1/auth/", include("apitokens.api.urls")),
    # The OpenAPI 3 schema and its Swagger UI page (signed-in users or tokens; the page's
    # assets are served locally from drf-spectacular-sidecar, no CDN).
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
]
