"""Signing API views, one module per resource: validate with a serializer, call
``signing.services``, render. Each list's query parameters are a FilterSet of
``signing.filtersets``.

Lists run a fixed number of queries whatever their length. Domain errors raised by the
services (PolicyExists 409, InvalidPolicy 400, KeyNotSuitable 409, ServiceNotAuthorized
403, NoSigningPolicy 409, ImageNotFound 404, ...) propagate to
``config.api.exception_handler``, which renders ``{"code", "message", "fields"?}``.
"""

from signing.api.views.namespaces import NamespacePolicyViewSet
from signing.api.views.policies import PolicyViewSet
from signing.api.views.sign import SignTagView, SignView
from signing.api.views.signatures import SignatureViewSet
from signing.api.views.verify import VerifyView

__all__ = [
    "NamespacePolicyViewSet",
    "PolicyViewSet",
    "SignTagView",
    "SignView",
    "SignatureViewSet",
    "VerifyView",
]
