"""Signing domain errors, with codes API users can program against."""

from __future__ import annotations

from config.errors import DomainError, ValidationFailed


class SigningError(DomainError):
    code = "SigningError"


class PolicyExists(SigningError):
    code = "PolicyExists"
    http_status = 409
    default_message = "This namespace already has a signing policy; only one is allowed."


class PolicyNotFound(SigningError):
    code = "PolicyNotFound"
    http_status = 404
    default_message = "No such signing policy."


class NoSigningPolicy(SigningError):
    code = "NoSigningPolicy"
    http_status = 409
    default_message = "The namespace has no signing policy."


class InvalidPolicy(ValidationFailed):
    """A policy field breaks a rule; ``code`` names the rule."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message, fields={field: [message]})
        self.code = code


class KeyNotSuitable(SigningError):
    """The policy's key cannot sign images (usage, state); ``code`` says why."""

    http_status = 409

    def __init__(self, code: str, message: str, **details) -> None:
        super().__init__(message, **details)
        self.code = code


class ImageNotFound(SigningError):
    code = "ImageNotFound"
    http_status = 404
    default_message = "No such image."


class ManifestUnknown(SigningError):
    """The registry does not hold the digest Signet was asked to sign (a forged or early
    event, a deleted image). Nothing is signed or published."""

    code = "ManifestUnknown"
    http_status = 404
    default_message = "The registry does not hold this manifest; nothing was signed."


class ManifestNotVerified(SigningError):
    """What the registry sent for the digest is not an image Signet may sign: its bytes do
    not hash to the digest, or it is not an image manifest or index."""

    code = "ManifestInvalid"
    http_status = 502
    default_message = "The registry's manifest could not be verified; nothing was signed."


class OperationInProgress(SigningError):
    """The same work is already under way (one re-sign of a policy at a time)."""

    code = "OperationInProgress"
    http_status = 409
    default_message = "This work is already in progress."


class NothingToDo(SigningError):
    """The request covers no image that needs it (all signed, none failed)."""

    code = "NothingToDo"
    http_status = 409
    default_message = "Nothing to do."


class MixedInstances(ValidationFailed):
    """One operation covers the images of one registry instance."""

    def __init__(self, message: str) -> None:
        super().__init__(message, fields={"instance": [message]})
