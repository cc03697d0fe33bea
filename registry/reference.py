"""The OCI reference grammar and the manifest media types, in one place.

Docker Distribution's reference grammar (github.com/distribution/reference, regexp.go):
repository names, tags and digests, as patterns (for the models' validators and the
database CHECK constraints), compiled expressions and validators that raise
``InvalidReference`` (for the registry client and the webhook). The patterns are
anchored with ``\\A`` and ``\\Z`` (not ``^`` and ``$``, which let a trailing newline
through); Python and PostgreSQL regular expressions both understand them.

Media types come in named sets; a name says which set it is:

- ``IMAGE_MANIFEST_TYPES``: manifests of one image (OCI and Docker schema 2 and 1);
- ``INDEX_TYPES``: image indexes (manifest lists) that point at image manifests;
- ``RECORDED_MANIFEST_TYPES``: both; what a push event must carry for Signet to record
  it, and what Signet signs;
- ``ACCEPTED_MANIFEST_TYPES``: what the registry client asks for (the ``Accept`` header,
  in order of preference) when it reads a manifest.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from django.core.validators import RegexValidator

from registry.errors import InvalidReference

# --- media types ----------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MANIFEST_TYPES = frozenset(
    {OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED}
)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
RECORDED_MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES
ACCEPTED_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)

# --- grammar --------------------------------------------------------------------------------

# "[-]+" (not "[-]*"): the same names, without catastrophic backtracking on bad ones.
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
TAG_FRAGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# Manifests are addressed by SHA-256 digests only (what Distribution computes for them).
DIGEST_FRAGMENT = r"sha256:[0-9a-f]{64}"

REPOSITORY_PATTERN = rf"\A{PATH_COMPONENT}(?:/{PATH_COMPONENT})*\Z"
REPOSITORY_MAX_LENGTH = 255
TAG_PATTERN = rf"\A{TAG_FRAGMENT}\Z"
DIGEST_PATTERN = rf"\A{DIGEST_FRAGMENT}\Z"
DIGEST_LENGTH = 71
# A namespace is one path component, 2-30 characters (the TCR rule).
NAMESPACE_PATTERN = rf"\A(?=.{{2,30}}\Z){PATH_COMPONENT}\Z"
# Artifacts cosign and friends attach to an image by tag; never recorded, never signed.
SIGNATURE_TAG_PATTERN = r"\Asha256-[0-9a-f]{64}\.(sig|att|sbom)\Z"
# What users name an image by: <domain>/<repository>[:<tag>][@<digest>]. The repository
# part is loose here (lazy, so a tag is not swallowed); check it with REPOSITORY_RE.
IMAGE_REFERENCE_PATTERN = (
    r"\A(?P<domain>[^/]+)/(?P<repository>[a-z0-9][a-z0-9._/-]*?)"
    rf"(?::(?P<tag>{TAG_FRAGMENT}))?(?:@(?P<digest>{DIGEST_FRAGMENT}))?\Z"
)

REPOSITORY_RE = re.compile(REPOSITORY_PATTERN)
TAG_RE = re.compile(TAG_PATTERN)
DIGEST_RE = re.compile(DIGEST_PATTERN)
NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)
SIGNATURE_TAG_RE = re.compile(SIGNATURE_TAG_PATTERN)
IMAGE_REFERENCE_RE = re.compile(IMAGE_REFERENCE_PATTERN)

# --- model validators (Django form and model validation) ------------------------------------

repository_validator = RegexValidator(
    REPOSITORY_PATTERN,
    "Repository names are lowercase path components (letters, digits, '.', '_', '-') "
    "separated by '/'.",
    code="invalid_repository",
)
namespace_validator = RegexValidator(
    NAMESPACE_PATTERN,
    "Namespace names are 2-30 lowercase letters, digits and single '.', '_' or '-' separators, "
    "starting and ending with a letter or digit.",
    code="invalid_namespace",
)
tag_validator = RegexValidator(
    TAG_PATTERN,
    "Tags are 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'.",
    code="invalid_tag",
)
digest_validator = RegexValidator(
    DIGEST_PATTERN, "Digests look like sha256:<64 lowercase hex digits>.", code="invalid_digest"
)

# --- validators raising InvalidReference (before any registry request) ----------------------


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_valid_repository_name(name: object) -> TypeGuard[str]:
    return (
        isinstance(name, str)
        and len(name) <= REPOSITORY_MAX_LENGTH
        and REPOSITORY_RE.fullmatch(name) is not None
    )


def validate_repository_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise ``InvalidReference``.

    Lowercase path components (``[a-z0-9]`` runs joined by ``.``, ``_``, ``__`` or dashes)
    separated by ``/``, at most 255 characters in total.
    """
    if not is_valid_repository_name(name):
        raise InvalidReference(
            f"invalid repository name {_shown(name)}: expected lowercase path components "
            "([a-z0-9] separated by '.', '_', '__' or '-') joined by '/', "
            f"at most {REPOSITORY_MAX_LENGTH} characters",
            field="repository",
            value=str(name),
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it matches ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, else raise."""
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"invalid tag {_shown(tag)}: expected 1-128 characters of [A-Za-z0-9_.-], "
            "not starting with '.' or '-'",
            field="tag",
            value=str(tag),
        )
    return tag


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` followed by 64 lowercase hex digits, else raise."""
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise InvalidReference(
            f"invalid digest {_shown(digest)}: expected 'sha256:' and 64 lowercase hex digits",
            field="digest",
            value=str(digest),
        )
    return digest


def is_digest(reference: str) -> bool:
    """True when a manifest reference is a digest rather than a tag."""
    return isinstance(reference, str) and ":" in reference


def validate_reference(reference: str) -> str:
    """A manifest reference: a digest (contains ``:``) or a tag."""
    return validate_digest(reference) if is_digest(reference) else validate_tag(reference)


def is_signature_tag(tag: str) -> bool:
    return bool(SIGNATURE_TAG_RE.fullmatch(tag))


def namespace_of(repository: str) -> str | None:
    """The namespace (first path segment) Signet files a repository under, if it has one."""
    if "/" not in repository:
        return None
    namespace = repository.split("/", 1)[0]
    return namespace if NAMESPACE_RE.fullmatch(namespace) else None
