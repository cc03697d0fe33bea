"""Routes under /api/v1/signing/ (the per-tag sign URL, ``/api/v1/registry/tags/<id>/sign/``,
is in ``registry_urls``)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from signing.api.views.namespaces import NamespacePolicyViewSet
from signing.api.views.operations import OperationViewSet
from signing.api.views.policies import PolicyViewSet
from signing.api.views.sign import SignView
from signing.api.views.signatures import SignatureViewSet
from signing.api.views.verify import VerifyView

router = SimpleRouter()
router.register("policies", PolicyViewSet, basename="signing-policy")
router.register("signatures", SignatureViewSet, basename="signing-signature")
router.register("namespaces", NamespacePolicyViewSet, basename="signing-namespace")
router.register("operations", OperationViewSet, basename="signing-operation")

urlpatterns = [
    path("sign/", SignView.as_view(), name="signing-sign"),
    path("verify/", VerifyView.as_view(), name="signing-verify"),
    *router.urls,
]
