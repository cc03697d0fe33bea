"""The registry app's domain errors: talking to an OCI Distribution registry, and the
rules of instances, namespaces and recorded pushes.

Registry-call messages name the registry, the operation and the status, for example
``registry http://127.0.0.1:5000: PUT manifest prod/app:v1 failed: 400 MANIFEST_INVALID
(manifest invalid)``. They never contain credentials or tokens.

HTTP statuses are what *Signet's* API answers when one of these propagates: an
unreachable or failing registry is a 503/502, credentials the registry refuses
are Signet's own configuration problem (502, not a 401 for our caller), and a
missing manifest is a 404.
"""

from __future__ import annotations

from typing import Any

from config.errors import DomainError, ValidationFailed


class RegistryError(DomainError):
    """Base of every registry failure.

    Attributes: ``registry`` (its name or base URL), ``operation`` (for example
    ``"PUT manifest prod/app:v1"``), ``status`` (the registry's HTTP status, or None
    when no answer came) and ``registry_code`` (the first ``errors[].code`` of the
    registry's JSON body, for example ``MANIFEST_UNKNOWN``, or None).
    """

    code = "FailedOperation.RegistryError"
    http_status = 502
    default_message = "The registry request failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        registry: str = "",
        operation: str = "",
        status: int | None = None,
        registry_code: str | None = None,
        http_status: int | None = None,
        **details: Any,
    ) -> None:
        self.registry = registry
        self.operation = operation
        self.status = status
        self.registry_code = registry_code
        if http_status is not None:
            self.http_status = http_status
        if registry:
            details.setdefault("registry", registry)
        if operation:
            details.setdefault("operation", operation)
        if status is not None:
            details.setdefault("status", status)
        if registry_code:
            details.setdefault("registry_code", registry_code)
        super().__init__(message, **details)


class RegistryUnavailable(RegistryError):
    """No usable answer: connection refused, timeout, or 5xx after the retries.

    ``http_status`` is 503 when the registry could not be reached and 502 when it
    answered with a server error.
    """

    code = "InternalError.RegistryUnavailable"
    http_status = 503
    default_message = "The registry is unavailable."


class RegistryAuthError(RegistryError):
    """401/403 after every authentication attempt (credentials, token flow)."""

    code = "FailedOperation.RegistryAuthFailure"
    http_status = 502
    default_message = "The registry refused Signet's credentials."


class RegistryNotFound(RegistryError):
    """404: the manifest, blob or repository is unknown to the registry."""

    code = "ResourceNotFound.RegistryObject"
    http_status = 404
    default_message = "The registry does not know that manifest, blob or repository."


class RegistryDigestMismatch(RegistryError):
    """The bytes the registry sent do not hash to the digest asked for (or the one it named)."""

    code = "FailedOperation.RegistryDigestMismatch"
    http_status = 502
    default_message = "The registry answered with content that does not match its digest."


class RegistryRequestRejected(RegistryError):
    """Another 4xx; ``registry_code`` carries the registry's code (e.g. ``MANIFEST_INVALID``)."""

    code = "FailedOperation.RegistryRequestRejected"
    http_status = 502
    default_message = "The registry rejected the request."


class RegistryResponseTooLarge(RegistryError):
    """An answer (manifest, blob, token, listing) above the size Signet reads into memory."""

    code = "FailedOperation.RegistryResponseTooLarge"
    http_status = 502
    default_message = "The registry's answer is larger than Signet accepts."


class RegistryRedirectRefused(RegistryError):
    """A redirect Signet does not follow: only blob downloads may be redirected."""

    code = "FailedOperation.RegistryRedirectRefused"
    http_status = 502
    default_message = "The registry redirected a request that may not be redirected."


class RegistryAddressDenied(RegistryError):
    """The registry (or its realm or storage) resolves into ``REGISTRY_BACKEND_DENY_NETWORKS``."""

    code = "FailedOperation.RegistryAddressDenied"
    http_status = 502
    default_message = "The registry's address is in a network Signet may not connect to."


class InvalidReference(ValidationFailed):
    """A repository name, tag or digest that breaks the Distribution grammar.

    Raised before any request is sent. ``fields`` maps the offending field
    (``repository``, ``tag``, ``digest`` or ``reference``) to the message.
    """

    code = "InvalidParameterValue.InvalidReference"
    http_status = 400

    def __init__(self, message: str, *, field: str, value: str) -> None:
        super().__init__(message, fields={field: [message]})
        self.field = field
        self.value = value


# --- instances, namespaces and recorded pushes ---------------------------------------------


class InstanceNotFound(DomainError):
    code = "ResourceNotFound.Instance"
    http_status = 404
    default_message = "No registry instance with that name exists."


class InstanceExists(DomainError):
    code = "ResourceInUse.InstanceExists"
    http_status = 409
    default_message = "A registry instance with that name already exists."


class InstanceInUse(DomainError):
    code = "ResourceInUse.Instance"
    http_status = 409
    default_message = "The instance still has namespaces; delete them first."


class InstanceMisconfigured(DomainError):
    """The instance's credential cannot be used: Signet's configuration, which the caller
    cannot fix (502, like a credential the registry refuses), not a crash."""

    code = "FailedOperation.InstanceMisconfigured"
    http_status = 502
    default_message = "The instance's registry credential cannot be used: ask an instance editor."


class DomainNameTaken(ValidationFailed):
    """Another instance already answers to the domain name (image verification finds the
    instance by domain). The other instance is not named: the caller may not see it."""

    code = "ResourceInUse.DomainName"
    http_status = 409


class NamespaceExists(DomainError):
    code = "ResourceInUse.NamespaceExists"
    http_status = 409
    default_message = "A namespace with that name already exists in the instance."


class DeleteHandlerFailed(DomainError):
    """A delete handler failed: the delete is refused so nothing it guards is orphaned."""

    code = "FailedOperation.DeleteHandlerFailed"
    http_status = 503
