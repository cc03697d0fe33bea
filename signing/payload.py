"""The cosign "simple signing" payload and the ``sha256-<hex>.sig`` artifact.

Pure functions: no ORM, no HTTP. What is written here is what skopeo
(containers/image ``sigstoreSigned``) and cosign accept; see
``shared/reference/signature-format.md``.

- :func:`build_payload` / :func:`parse_payload`: the JSON document that is signed.
- :func:`signature_tag`: where the signatures of a manifest live.
- :class:`SignatureLayer`, :func:`build_signature_manifest`,
  :func:`parse_signature_manifest`, :func:`merge_layers`: the OCI image manifest
  holding one layer per signature.

Only sha256 manifest digests are handled: that is what Docker Distribution
reports and what cosign names its ``.sig`` tags after.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

PAYLOAD_TYPE = "cosign container image signature"

OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
# Extra layer annotation naming the signing key (sha256 hex of its DER
# SubjectPublicKeyInfo). cosign and containers/image ignore annotations they
# do not know; Signet uses it to replace its own earlier signature.
KEY_FINGERPRINT_ANNOTATION = "dev.signet/key-fingerprint"

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
SIGNATURE_TAG_RE = re.compile(r"^sha256-(?P<hex>[a-f0-9]{64})\.sig$")
_FINGERPRINT_RE = re.compile(r"^[a-f0-9]{64}$")

# The docker reference grammar of distribution/reference (regexp.go).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_ANY_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME_RE = re.compile(rf"^(?P<domain>{_DOMAIN})/(?P<path>{_PATH})$")
_REFERENCE_RE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_ANY_DIGEST}))?$"
)
_NAME_MAX_LENGTH = 255


class InvalidPayload(ValueError):
    """A payload (or the input to build one) that verifiers would reject; the message says why."""


class InvalidSignatureManifest(ValueError):
    """A ``.sig`` manifest that is not the cosign simple-signing layout; the message says why."""


# --- payload ------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    docker_reference: str
    manifest_digest: str
    optional: dict[str, Any] | None = None


def validate_digest(manifest_digest: str) -> str:
    """Return ``manifest_digest`` if it is ``sha256:`` + 64 lowercase hex digits."""
    if not isinstance(manifest_digest, str) or not DIGEST_RE.match(manifest_digest):
        raise InvalidPayload(
            f"manifest digest {manifest_digest!r} is not 'sha256:' followed by 64 lowercase hex"
        )
    return manifest_digest


def validate_repository_reference(docker_reference: str) -> str:
    """Return ``docker_reference`` if it is ``<domain>/<path>`` without tag or digest.

    The first component must be a registry domain (contains ``.`` or ``:`` or is
    ``localhost``): otherwise verifiers read it as a Docker Hub path. The
    repository path must be lowercase, as the reference grammar requires.
    """
    if not isinstance(docker_reference, str) or not docker_reference:
        raise InvalidPayload("docker reference must be a non-empty string")
    ref = docker_reference
    if "@" in ref:
        raise InvalidPayload(f"docker reference {ref!r} must not carry a digest")
    domain, _, path = ref.partition("/")
    if ":" in path:
        raise InvalidPayload(f"docker reference {ref!r} must not carry a tag")
    if not path:
        raise InvalidPayload(
            f"docker reference {ref!r} must be '<registry domain>/<repository path>'"
        )
    if not ("." in domain or ":" in domain or domain == "localhost"):
        raise InvalidPayload(
            f"docker reference {ref!r} must start with a registry domain (with a '.' or ':', "
            "or 'localhost'); otherwise verifiers read it as a Docker Hub path"
        )
    if path != path.lower():
        raise InvalidPayload(f"docker reference {ref!r}: the repository path must be lowercase")
    if not _NAME_RE.match(ref):
        raise InvalidPayload(f"docker reference {ref!r} is not a valid repository name")
    if len(ref) > _NAME_MAX_LENGTH:
        raise InvalidPayload(f"docker reference is longer than {_NAME_MAX_LENGTH} characters")
    return ref


def build_payload(*, docker_reference: str, manifest_digest: str) -> bytes:
    """The payload bytes to sign, byte-identical to what cosign writes."""
    critical = {
        "identity": {"docker-reference": validate_repository_reference(docker_reference)},
        "image": {"docker-manifest-digest": validate_digest(manifest_digest)},
        "type": PAYLOAD_TYPE,
    }
    document = {"critical": critical, "optional": None}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidPayload(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise InvalidPayload(f"invalid JSON number {name}")


def _exact_object(value: Any, where: str, keys: Iterable[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayload(f"{where} must be a JSON object")
    expected = set(keys)
    unknown = sorted(set(value) - expected)
    if unknown:
        raise InvalidPayload(f"{where} has unknown key {unknown[0]!r}")
    missing = sorted(expected - set(value))
    if missing:
        raise InvalidPayload(f"{where} is missing key {missing[0]!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidPayload(f"{where} must be a string")
    return value


def _validate_signed_reference(ref: str) -> str:
    match = _REFERENCE_RE.match(ref)
    if not ref or not match:
        raise InvalidPayload(f"docker-reference {ref!r} is not a valid docker reference")
    if len(match.group("name")) > _NAME_MAX_LENGTH:
        raise InvalidPayload(f"docker-reference name is longer than {_NAME_MAX_LENGTH} characters")
    return ref


def parse_payload(data: bytes) -> Payload:
    """Parse payload bytes as strictly as containers/image does.

    Top level exactly ``critical`` and ``optional`` (``null`` or an object whose
    ``creator`` is a string and ``timestamp`` an integer); ``critical`` exactly
    ``type`` (the cosign type string), ``image`` (exactly
    ``docker-manifest-digest``) and ``identity`` (exactly ``docker-reference``);
    no duplicate keys, no trailing data. The reference may carry a tag or digest
    (other signers write one); the manifest digest must be sha256.
    """
    if not isinstance(data, bytes | bytearray):
        raise InvalidPayload("payload must be bytes")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPayload("payload is not UTF-8") from exc
    try:
        document = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"payload is not JSON: {exc.msg}") from exc

    top = _exact_object(document, "payload", ("critical", "optional"))
    optional = top["optional"]
    if optional is not None:
        if not isinstance(optional, dict):
            raise InvalidPayload("optional must be null or a JSON object")
        creator = optional.get("creator")
        if creator is not None and not isinstance(creator, str):
            raise InvalidPayload("optional.creator must be a string")
        timestamp = optional.get("timestamp")
        if timestamp is not None and (
            isinstance(timestamp, bool)
            or not isinstance(timestamp, int | float)
            or (isinstance(timestamp, float) and not timestamp.is_integer())
        ):
            raise InvalidPayload("optional.timestamp must be an integer")

    critical = _exact_object(top["critical"], "critical", ("type", "image", "identity"))
    payload_type = _string(critical["type"], "critical.type")
    if payload_type != PAYLOAD_TYPE:
        raise InvalidPayload(f"unrecognised signature type {payload_type!r}")
    image = _exact_object(critical["image"], "critical.image", ("docker-manifest-digest",))
    digest = _string(image["docker-manifest-digest"], "critical.image.docker-manifest-digest")
    validate_digest(digest)
    identity = _exact_object(critical["identity"], "critical.identity", ("docker-reference",))
    reference = _string(identity["docker-reference"], "critical.identity.docker-reference")
    _validate_signed_reference(reference)
    return Payload(docker_reference=reference, manifest_digest=digest, optional=optional)


def signature_tag(manifest_digest: str) -> str:
    """The tag of the signature artifact of ``manifest_digest``: ``sha256-<hex>.sig``."""
    validate_digest(manifest_digest)
    return "sha256-" + manifest_digest.removeprefix("sha256:") + ".sig"


# --- the .sig artifact ---------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SignatureLayer:
    """One signature: the payload blob, its base64 signature and extra annotations.

    ``annotations`` are the layer's annotations other than the signature one
    (for example :data:`KEY_FINGERPRINT_ANNOTATION`).
    """

    payload: bytes
    signature_b64: str
    annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.payload, bytes) or not self.payload:
            raise ValueError("payload must be non-empty bytes")
        if not isinstance(self.signature_b64, str) or not self.signature_b64:
            raise ValueError("signature_b64 must be a non-empty string")
        if SIGNATURE_ANNOTATION in self.annotations:
            raise ValueError(f"{SIGNATURE_ANNOTATION} is set from signature_b64, not annotations")
        for key, value in self.annotations.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError("annotations must map strings to strings")
        object.__setattr__(self, "annotations", dict(self.annotations))

    @property
    def digest(self) -> str:
        return sha256_digest(self.payload)

    @property
    def key_fingerprint(self) -> str | None:
        return self.annotations.get(KEY_FINGERPRINT_ANNOTATION)

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": SIMPLESIGNING_MEDIA_TYPE,
            "size": len(self.payload),
            "digest": self.digest,
            "annotations": {SIGNATURE_ANNOTATION: self.signature_b64, **self.annotations},
        }

    @classmethod
    def from_entry(cls, entry: SignatureEntry, payload: bytes) -> SignatureLayer:
        """Rebuild a layer read from a ``.sig`` manifest once its blob has been fetched."""
        if sha256_digest(payload) != entry.layer_digest:
            raise InvalidSignatureManifest(f"blob does not match layer digest {entry.layer_digest}")
        return cls(
            payload=payload, signature_b64=entry.signature_b64, annotations=entry.annotations
        )


def signing_annotations(*, key_fingerprint: str) -> dict[str, str]:
    """The extra annotations Signet puts on a layer it signs."""
    if not _FINGERPRINT_RE.match(key_fingerprint):
        raise ValueError("key fingerprint must be 64 lowercase hex digits (sha256)")
    return {KEY_FINGERPRINT_ANNOTATION: key_fingerprint}


def build_signature_manifest(
    layers: list[SignatureLayer],
) -> tuple[bytes, bytes, dict[str, bytes]]:
    """The ``.sig`` OCI image manifest for ``layers``, in order.

    Returns ``(manifest_bytes, config_bytes, blobs)`` where ``blobs`` maps each
    digest the manifest references (config and payloads) to its bytes: upload
    all of them before the manifest.
    """
    if not layers:
        raise ValueError("a signature manifest needs at least one layer")
    diff_ids = [layer.digest for layer in layers]
    config_bytes = _compact(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
            "os": "",
            "rootfs": {"diff_ids": diff_ids, "type": "layers"},
        }
    )
    config_digest = sha256_digest(config_bytes)
    manifest_bytes = _compact(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": OCI_CONFIG_MEDIA_TYPE,
                "size": len(config_bytes),
                "digest": config_digest,
            },
            "layers": [layer.descriptor() for layer in layers],
        }
    )
    blobs = {config_digest: config_bytes}
    for layer in layers:
        blobs[layer.digest] = layer.payload
    return manifest_bytes, config_bytes, blobs


class SignatureEntry(NamedTuple):
    """A layer of a ``.sig`` manifest, before its payload blob is fetched."""

    layer_digest: str
    signature_b64: str
    annotations: dict[str, str]


def parse_signature_manifest(manifest_json: Mapping[str, Any]) -> list[SignatureEntry]:
    """The signature layers of a decoded ``.sig`` manifest, in order.

    ``annotations`` excludes the signature annotation. Raises
    :class:`InvalidSignatureManifest` for anything that is not the cosign
    simple-signing layout (another manifest type, another layer type, a layer
    without a signature).
    """
    if not isinstance(manifest_json, Mapping):
        raise InvalidSignatureManifest("manifest must be a JSON object")
    if manifest_json.get("schemaVersion") != 2:
        raise InvalidSignatureManifest("manifest schemaVersion must be 2")
    media_type = manifest_json.get("mediaType", OCI_MANIFEST_MEDIA_TYPE)
    if media_type != OCI_MANIFEST_MEDIA_TYPE:
        raise InvalidSignatureManifest(
            f"manifest media type {media_type!r} is not {OCI_MANIFEST_MEDIA_TYPE}"
        )
    layers = manifest_json.get("layers")
    if not isinstance(layers, list):
        raise InvalidSignatureManifest("manifest has no layers list")
    return [_signature_entry(index, layer) for index, layer in enumerate(layers)]


def _signature_entry(index: int, layer: Any) -> SignatureEntry:
    """Layer ``index`` of a ``.sig`` manifest, checked to be a cosign simple-signing layer."""
    if not isinstance(layer, Mapping):
        raise InvalidSignatureManifest(f"layer {index} is not an object")
    if layer.get("mediaType") != SIMPLESIGNING_MEDIA_TYPE:
        raise InvalidSignatureManifest(
            f"layer {index} media type {layer.get('mediaType')!r} is not {SIMPLESIGNING_MEDIA_TYPE}"
        )
    digest = layer.get("digest")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidSignatureManifest(f"layer {index} has no valid sha256 digest")
    annotations = layer.get("annotations") or {}
    if not isinstance(annotations, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidSignatureManifest(f"layer {index} annotations must map strings to strings")
    signature = annotations.get(SIGNATURE_ANNOTATION)
    if not signature:
        raise InvalidSignatureManifest(f"layer {index} has no {SIGNATURE_ANNOTATION}")
    extra = {k: v for k, v in annotations.items() if k != SIGNATURE_ANNOTATION}
    return SignatureEntry(digest, signature, extra)


def same_key_fingerprint(a: SignatureLayer, b: SignatureLayer) -> bool:
    """``same_key`` for :func:`merge_layers`: both layers name the same key fingerprint."""
    return a.key_fingerprint is not None and a.key_fingerprint == b.key_fingerprint


def _identical(a: SignatureLayer, b: SignatureLayer) -> bool:
    return (a.payload, a.signature_b64, a.annotations) == (
        b.payload,
        b.signature_b64,
        b.annotations,
    )


def _latest_per_key(
    layers: list[SignatureLayer], same_key: Callable[[SignatureLayer, SignatureLayer], bool]
) -> list[SignatureLayer]:
    """One layer per key, in first-seen order; a later layer of a key replaces the earlier."""
    latest: list[SignatureLayer] = []
    for layer in layers:
        for index, earlier in enumerate(latest):
            if same_key(earlier, layer):
                latest[index] = layer
                break
        else:
            latest.append(layer)
    return latest


def merge_layers(
    existing: list[SignatureLayer],
    new: list[SignatureLayer],
    *,
    same_key: Callable[[SignatureLayer, SignatureLayer], bool],
) -> list[SignatureLayer]:
    """The layers of the ``.sig`` manifest after adding ``new`` signatures.

    Layers of other keys are kept, in their order. A new layer takes the place
    of the first existing layer of the same key, and further layers of that key
    are dropped; a new layer of a key not yet present is appended. Among the new
    layers, a later one of the same key wins. Identical layers are never repeated.
    """
    incoming = _latest_per_key(new, same_key)
    result: list[SignatureLayer] = []

    def add(layer: SignatureLayer) -> None:
        if not any(_identical(layer, kept) for kept in result):
            result.append(layer)

    placed: set[int] = set()
    for layer in existing:
        match = next((i for i, n in enumerate(incoming) if same_key(layer, n)), None)
        if match is None:
            add(layer)
        elif match not in placed:
            placed.add(match)
            add(incoming[match])
    for index, layer in enumerate(incoming):
        if index not in placed:
            add(layer)
    return result
