from django.urls import path
from rest_framework.routers import SimpleRouter

from registry.api.views import (
    InstanceViewSet,
    ManifestViewSet,
    NamespaceViewSet,
    RepositoryViewSet,
    TagViewSet,
)
from registry.api.webhook import registry_events

router = SimpleRouter()
router.register("instances", InstanceViewSet, basename="registry-instance")
router.register("namespaces", NamespaceViewSet, basename="registry-namespace")
router.register("repositories", RepositoryViewSet, basename="registry-repository")
router.register("tags", TagViewSet, basename="registry-tag")
router.register("manifests", ManifestViewSet, basename="registry-manifest")

urlpatterns = [
    # The registry's notifications endpoint (its own token auth, no session or CSRF).
    path("instances/<str:instance_name>/events/", registry_events, name="registry-webhook"),
    *router.urls,
]
