"""KMS domain errors, with codes that mirror Tencent Cloud KMS."""

from __future__ import annotations

from config.errors import DomainError, ValidationFailed


class KmsError(DomainError):
    code = "InternalError"


class KeyNotFound(KmsError):
    code = "ResourceUnavailable.CmkNotFound"
    http_status = 404
    default_message = "No key with that KeyId exists."


class CmkDisabled(KmsError):
    code = "ResourceUnavailable.CmkDisabled"
    http_status = 409
    default_message = "The key is disabled; enable it first."


class KeyPendingDelete(KmsError):
    code = "ResourceUnavailable.KeyPendingDelete"
    http_status = 409
    default_message = "The key is pending deletion; cancel the deletion first."


class CmkShouldBeDisabled(KmsError):
    code = "ResourceUnavailable.CmkShouldBeDisabled"
    http_status = 409
    default_message = "The key must be Disabled before its deletion can be scheduled."


class CmkStateNotSupport(KmsError):
    code = "ResourceUnavailable.CmkStateNotSupport"
    http_status = 409
    default_message = "The key's state does not allow this operation."


class InvalidKeyUsage(KmsError):
    code = "InvalidParameterValue.InvalidKeyUsage"
    http_status = 400
    default_message = "The key's usage does not allow this operation or algorithm."


class AliasAlreadyExists(KmsError):
    code = "InvalidParameterValue.AliasAlreadyExists"
    http_status = 409
    default_message = "A key with that alias already exists."


class KeyInUse(KmsError):
    code = "ResourceInUse.KeyInUse"
    http_status = 409
    default_message = "The key is in use and cannot be deleted."


class ServiceNotAuthorized(KmsError):
    code = "UnauthorizedOperation.ServiceNotAuthorized"
    http_status = 403


class MasterKeyError(KmsError):
    """The master keyring cannot open or seal key material (never shows key bytes)."""

    code = "InternalError.MasterKey"
    http_status = 500
    default_message = "The KMS master key cannot open this key's material."


class KmsUnavailable(KmsError):
    """A remote KMS could not be reached or answered outside the protocol."""

    code = "InternalError.KmsUnavailable"
    http_status = 503
    default_message = "The KMS is unavailable."


class InvalidParameter(ValidationFailed):
    code = "InvalidParameterValue"


ERRORS_BY_CODE: dict[str, type[KmsError]] = {
    cls.code: cls
    for cls in (
        KeyNotFound,
        CmkDisabled,
        KeyPendingDelete,
        CmkShouldBeDisabled,
        CmkStateNotSupport,
        InvalidKeyUsage,
        AliasAlreadyExists,
        KeyInUse,
        ServiceNotAuthorized,
        MasterKeyError,
        KmsUnavailable,
    )
}
