"""signing.payload: the cosign payload and the ``.sig`` artifact.

The pure tests pin the exact bytes; the end-to-end tests at the bottom prove
the format to the independent verifiers (Debian trixie's skopeo 1.18 and
cosign 2.5, fetched by ``scripts/install-verifiers``) against a real Docker
Distribution registry on loopback, without the rest of Signet.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from registry.client import OCI_MANIFEST, RegistryClient
from signing.payload import (
    KEY_FINGERPRINT_ANNOTATION,
    OCI_CONFIG_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_TAG_RE,
    SIMPLESIGNING_MEDIA_TYPE,
    InvalidPayload,
    InvalidSignatureManifest,
    Payload,
    SignatureEntry,
    SignatureLayer,
    build_payload,
    build_signature_manifest,
    merge_layers,
    parse_payload,
    parse_signature_manifest,
    same_key_fingerprint,
    signature_tag,
    signing_annotations,
)
from tests.support.oci import push_image
from tests.support.registry_server import RegistryServer
from tests.support.signer import Signer
from tests.support.verifiers import Verifiers, cosign_path, skopeo_path

DIGEST = "sha256:" + "0123456789abcdef" * 4
REFERENCE = "registry.example.com/team/app"
FP_A = "a" * 64
FP_B = "b" * 64


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the payload ----------------------------------------------------------------


def test_it_builds_the_payload_byte_for_byte_as_cosign_writes_it():
    payload = build_payload(docker_reference=REFERENCE, manifest_digest=DIGEST)

    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"registry.example.com/team/app"},'
        b'"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef'
        b'0123456789abcdef0123456789abcdef"},"type":"cosign container image signature"},'
        b'"optional":null}'
    )


def test_it_builds_payloads_for_registry_addresses_with_a_port_or_localhost():
    for reference in ("127.0.0.1:5000/ns/repo", "localhost/repo", "reg.example:443/a/b/c"):
        payload = build_payload(docker_reference=reference, manifest_digest=DIGEST)
        assert json.loads(payload)["critical"]["identity"]["docker-reference"] == reference


def test_it_parses_a_built_payload_back_to_the_same_values():
    payload = build_payload(docker_reference=REFERENCE, manifest_digest=DIGEST)

    assert parse_payload(payload) == Payload(
        docker_reference=REFERENCE, manifest_digest=DIGEST, optional=None
    )


def test_it_parses_a_payload_in_another_key_order_with_optional_metadata():
    # What containers/image itself writes: other key order, creator and timestamp.
    document = (
        '{"optional":{"creator":"containers/image 5.34","timestamp":1700000000},'
        '"critical":{"type":"cosign container image signature",'
        f'"image":{{"docker-manifest-digest":"{DIGEST}"}},'
        '"identity":{"docker-reference":"docker.io/library/busybox:latest"}}}'
    )

    parsed = parse_payload(document.encode())

    assert parsed.docker_reference == "docker.io/library/busybox:latest"
    assert parsed.manifest_digest == DIGEST
    assert parsed.optional == {"creator": "containers/image 5.34", "timestamp": 1700000000}


def _doc(**overrides: object) -> dict:
    document: dict = {
        "critical": {
            "identity": {"docker-reference": REFERENCE},
            "image": {"docker-manifest-digest": DIGEST},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    for path, value in overrides.items():
        *parents, leaf = path.split("__")
        target = document
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return document


_DELETE = object()


def _bytes(document: object) -> bytes:
    return json.dumps(document).encode()


BAD_PAYLOADS = [
    ("not json", b"{critical", "not JSON"),
    ("not utf-8", b'{"critical":"\xff"}', "not UTF-8"),
    ("trailing data", _bytes(_doc()) + b"{}", "not JSON"),
    ("top level array", b"[]", "payload must be a JSON object"),
    ("optional missing", _bytes(_doc(optional=_DELETE)), "missing key 'optional'"),
    ("critical missing", _bytes(_doc(critical=_DELETE)), "missing key 'critical'"),
    ("extra top-level key", _bytes(_doc(extra=1)), "unknown key 'extra'"),
    ("optional a string", _bytes(_doc(optional="x")), "optional must be null or a JSON object"),
    (
        "fractional timestamp",
        _bytes(_doc(optional={"timestamp": 1.5})),
        "optional.timestamp must be an integer",
    ),
    (
        "string timestamp",
        _bytes(_doc(optional={"timestamp": "1"})),
        "optional.timestamp must be an integer",
    ),
    ("numeric creator", _bytes(_doc(optional={"creator": 1})), "optional.creator must be a string"),
    ("critical not an object", _bytes(_doc(critical=[])), "critical must be a JSON object"),
    ("extra critical key", _bytes(_doc(critical__extra={})), "critical has unknown key 'extra'"),
    ("identity missing", _bytes(_doc(critical__identity=_DELETE)), "missing key 'identity'"),
    ("image missing", _bytes(_doc(critical__image=_DELETE)), "missing key 'image'"),
    ("type missing", _bytes(_doc(critical__type=_DELETE)), "missing key 'type'"),
    (
        "another type",
        _bytes(_doc(critical__type="atomic container signature")),
        "unrecognised signature type 'atomic container signature'",
    ),
    ("type not a string", _bytes(_doc(critical__type=None)), "critical.type must be a string"),
    (
        "extra image key",
        _bytes(_doc(critical__image__size=3)),
        "critical.image has unknown key 'size'",
    ),
    (
        "digest not a string",
        _bytes(_doc(critical__image={"docker-manifest-digest": 1})),
        "docker-manifest-digest must be a string",
    ),
    (
        "uppercase hex digest",
        _bytes(_doc(critical__image={"docker-manifest-digest": DIGEST.upper()})),
        "is not 'sha256:' followed by 64 lowercase hex",
    ),
    (
        "short digest",
        _bytes(_doc(critical__image={"docker-manifest-digest": DIGEST[:-1]})),
        "is not 'sha256:' followed by 64 lowercase hex",
    ),
    (
        "extra identity key",
        _bytes(_doc(critical__identity__x="y")),
        "critical.identity has unknown key 'x'",
    ),
    (
        "reference missing",
        _bytes(_doc(critical__identity={})),
        "critical.identity is missing key 'docker-reference'",
    ),
    (
        "reference not a string",
        _bytes(_doc(critical__identity={"docker-reference": ["a"]})),
        "docker-reference must be a string",
    ),
    (
        "uppercase repository path",
        _bytes(_doc(critical__identity={"docker-reference": "reg.example.com/Team/app"})),
        "is not a valid docker reference",
    ),
    (
        "empty reference",
        _bytes(_doc(critical__identity={"docker-reference": ""})),
        "is not a valid docker reference",
    ),
    (
        "duplicate key",
        b'{"critical":{},"critical":{},"optional":null}',
        "duplicate key 'critical'",
    ),
    ("NaN", b'{"critical":NaN,"optional":null}', "invalid JSON number NaN"),
]


@pytest.mark.parametrize(
    ("data", "reason"),
    [pytest.param(data, reason, id=name) for name, data, reason in BAD_PAYLOADS],
)
def test_it_rejects_a_payload_verifiers_would_reject(data: bytes, reason: str):
    with pytest.raises(InvalidPayload) as excinfo:
        parse_payload(data)

    assert reason in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("registry.example.com/team/app:v1", "must not carry a tag"),
        (f"registry.example.com/team/app@{DIGEST}", "must not carry a digest"),
        ("registry.example.com/Team/app", "repository path must be lowercase"),
        ("team/app", "must start with a registry domain"),
        ("app", "must be '<registry domain>/<repository path>'"),
        ("registry.example.com/team//app", "is not a valid repository name"),
        ("registry.example.com/-team/app", "is not a valid repository name"),
        ("", "non-empty string"),
        ("registry.example.com/" + "a" * 250, "longer than 255 characters"),
    ],
)
def test_it_refuses_to_build_a_payload_for_a_reference_that_is_not_a_repository(
    reference: str, reason: str
):
    with pytest.raises(InvalidPayload) as excinfo:
        build_payload(docker_reference=reference, manifest_digest=DIGEST)

    assert reason in str(excinfo.value)


@pytest.mark.parametrize(
    "digest",
    [DIGEST.upper(), DIGEST[:-1], DIGEST + "0", DIGEST.replace("sha256", "sha512"), "", "a" * 64],
)
def test_it_refuses_to_build_a_payload_for_a_malformed_digest(digest: str):
    with pytest.raises(InvalidPayload, match="is not 'sha256:' followed by 64 lowercase hex"):
        build_payload(docker_reference=REFERENCE, manifest_digest=digest)


def test_it_names_the_signature_tag_after_the_manifest_digest():
    tag = signature_tag(DIGEST)

    assert tag == "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
    match = SIGNATURE_TAG_RE.match(tag)
    assert match is not None
    assert match.group("hex") == DIGEST.removeprefix("sha256:")
    assert SIGNATURE_TAG_RE.match("v1") is None
    assert SIGNATURE_TAG_RE.match(tag.replace(".sig", ".att")) is None
    with pytest.raises(InvalidPayload):
        signature_tag("sha256:abc")


# --- the .sig artifact -----------------------------------------------------------


def _layer(payload: bytes = b'{"p":1}', signature: str = "c2ln", fingerprint: str | None = FP_A):
    annotations = signing_annotations(key_fingerprint=fingerprint) if fingerprint else {}
    return SignatureLayer(payload=payload, signature_b64=signature, annotations=annotations)


def test_it_builds_the_oci_signature_manifest_with_one_layer_per_signature():
    payload = build_payload(docker_reference=REFERENCE, manifest_digest=DIGEST)
    layer = _layer(payload, "c2lnbmF0dXJl", FP_A)

    manifest_bytes, config_bytes, blobs = build_signature_manifest([layer])

    payload_digest = sha256(payload)
    assert config_bytes == (
        b'{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z",'
        b'"history":[{"created":"0001-01-01T00:00:00Z"}],"os":"",'
        b'"rootfs":{"diff_ids":["' + payload_digest.encode() + b'"],"type":"layers"}}'
    )
    assert b" " not in manifest_bytes
    assert json.loads(manifest_bytes) == {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": OCI_CONFIG_MEDIA_TYPE,
            "size": len(config_bytes),
            "digest": sha256(config_bytes),
        },
        "layers": [
            {
                "mediaType": SIMPLESIGNING_MEDIA_TYPE,
                "size": len(payload),
                "digest": payload_digest,
                "annotations": {
                    SIGNATURE_ANNOTATION: "c2lnbmF0dXJl",
                    KEY_FINGERPRINT_ANNOTATION: FP_A,
                },
            }
        ],
    }
    assert blobs == {sha256(config_bytes): config_bytes, payload_digest: payload}


def test_it_lists_every_layer_digest_in_the_config_in_layer_order():
    first, second = _layer(b"one", "c2lnMQ==", FP_A), _layer(b"two", "c2lnMg==", FP_B)

    manifest_bytes, config_bytes, blobs = build_signature_manifest([first, second])

    config = json.loads(config_bytes)
    manifest = json.loads(manifest_bytes)
    assert config["rootfs"]["diff_ids"] == [sha256(b"one"), sha256(b"two")]
    assert len(config["history"]) == 2
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256(b"one"), sha256(b"two")]
    assert [layer["size"] for layer in manifest["layers"]] == [3, 3]
    assert manifest["config"]["digest"] == sha256(config_bytes)
    assert all(sha256(data) == digest for digest, data in blobs.items())
    assert set(blobs) == {sha256(config_bytes), sha256(b"one"), sha256(b"two")}


def test_it_refuses_an_empty_signature_manifest_and_a_clashing_signature_annotation():
    with pytest.raises(ValueError, match="at least one layer"):
        build_signature_manifest([])
    with pytest.raises(ValueError, match="set from signature_b64"):
        SignatureLayer(payload=b"p", signature_b64="s", annotations={SIGNATURE_ANNOTATION: "x"})


def test_it_reads_back_the_layers_of_a_signature_manifest():
    first, second = _layer(b"one", "c2lnMQ==", FP_A), _layer(b"two", "c2lnMg==", None)
    manifest_bytes, _, blobs = build_signature_manifest([first, second])

    entries = parse_signature_manifest(json.loads(manifest_bytes))

    assert entries == [
        SignatureEntry(sha256(b"one"), "c2lnMQ==", {KEY_FINGERPRINT_ANNOTATION: FP_A}),
        SignatureEntry(sha256(b"two"), "c2lnMg==", {}),
    ]
    layer_digest, signature_b64, annotations = entries[0]
    assert (layer_digest, signature_b64, annotations["dev.signet/key-fingerprint"]) == (
        sha256(b"one"),
        "c2lnMQ==",
        FP_A,
    )
    rebuilt = [SignatureLayer.from_entry(e, blobs[e.layer_digest]) for e in entries]
    assert rebuilt == [first, second]
    with pytest.raises(InvalidSignatureManifest, match="does not match layer digest"):
        SignatureLayer.from_entry(entries[0], b"tampered")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json"},
            "is not application/vnd.oci.image.manifest.v1+json",
        ),
        ({"schemaVersion": 1}, "schemaVersion must be 2"),
        ({"layers": None}, "no layers list"),
        ({"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar"}]}, "media type"),
        (
            {"layers": [{"mediaType": SIMPLESIGNING_MEDIA_TYPE, "digest": "sha256:x"}]},
            "no valid sha256 digest",
        ),
        (
            {"layers": [{"mediaType": SIMPLESIGNING_MEDIA_TYPE, "digest": DIGEST}]},
            "has no dev.cosignproject.cosign/signature",
        ),
    ],
)
def test_it_rejects_a_manifest_that_is_not_a_cosign_signature_artifact(change, reason):
    manifest = json.loads(build_signature_manifest([_layer()])[0])
    manifest.update(change)

    with pytest.raises(InvalidSignatureManifest) as excinfo:
        parse_signature_manifest(manifest)

    assert reason in str(excinfo.value)


def test_merging_a_signature_of_another_key_keeps_the_existing_layers_and_appends():
    existing = [_layer(b"p", "a1", FP_A)]
    new = _layer(b"p", "b1", FP_B)

    merged = merge_layers(existing, [new], same_key=same_key_fingerprint)

    assert merged == [existing[0], new]


def test_resigning_with_the_same_key_replaces_that_keys_layer_in_place():
    a_old, b_old, c_old = (
        _layer(b"p", "a1", FP_A),
        _layer(b"p", "b1", FP_B),
        _layer(b"p", "c1", None),
    )
    a_new = _layer(b"p2", "a2", FP_A)

    merged = merge_layers([a_old, b_old, c_old], [a_new], same_key=same_key_fingerprint)

    assert merged == [a_new, b_old, c_old]
    assert [layer.signature_b64 for layer in merged].count("a1") == 0


def test_merging_never_produces_duplicate_layers():
    a, b = _layer(b"p", "a1", FP_A), _layer(b"p", "b1", FP_B)
    a_again = _layer(b"p", "a1", FP_A)
    # A .sig already holding two layers of key A (written by an older tool) collapses to one.
    stale_a = _layer(b"old", "a0", FP_A)

    assert merge_layers([a, b], [a_again], same_key=same_key_fingerprint) == [a, b]
    assert merge_layers([stale_a, b, stale_a], [a], same_key=same_key_fingerprint) == [a, b]
    assert merge_layers([], [a, _layer(b"p", "a2", FP_A)], same_key=same_key_fingerprint) == [
        _layer(b"p", "a2", FP_A)
    ]
    # Layers without a fingerprint are never "the same key" and identical ones are kept once.
    unknown = _layer(b"p", "u1", None)
    assert merge_layers([unknown, unknown], [a], same_key=same_key_fingerprint) == [unknown, a]

    manifest, config, _ = build_signature_manifest(
        merge_layers([a, b], [a_again, b], same_key=same_key_fingerprint)
    )
    assert len(json.loads(manifest)["layers"]) == 2
    assert len(json.loads(config)["rootfs"]["diff_ids"]) == 2


# --- end to end: the independent verifiers accept what this module writes -----------

SIGNED_DOMAIN = "registry.signet.test"  # the policy's domain: not the address we push to


def publish(client: RegistryClient, repository: str, digest: str, signer: Signer) -> str:
    """Sign ``digest`` and add the signature to its ``.sig`` artifact, as Signet will."""
    payload = build_payload(
        docker_reference=f"{SIGNED_DOMAIN}/{repository}", manifest_digest=digest
    )
    tag = signature_tag(digest)
    existing: list[SignatureLayer] = []
    if client.head_manifest(repository, tag) is not None:
        for entry in parse_signature_manifest(client.get_manifest(repository, tag).json):
            blob = client.get_blob(repository, entry.layer_digest)
            existing.append(SignatureLayer.from_entry(entry, blob))
    layers = merge_layers(existing, [signer.sign(payload)], same_key=same_key_fingerprint)
    manifest, _, blobs = build_signature_manifest(layers)
    for blob_digest, blob in blobs.items():
        assert client.upload_blob(repository, blob) == blob_digest
    return client.put_manifest(repository, tag, manifest, OCI_MANIFEST)


@pytest.fixture
def verifiers(tmp_path: Path, registry_server: RegistryServer) -> Verifiers:
    skopeo_path(), cosign_path()  # fail (not skip) with the install hint before anything else
    return Verifiers(tmp_path, registry_server)


@pytest.mark.registry_server
def test_skopeo_and_cosign_accept_a_signature_published_with_this_module(
    tmp_path, registry_client, verifiers
):
    signer = Signer.create(tmp_path / "policy-key.pub")
    digest = push_image(registry_client, "team/app", "v1", seed="signed")

    sig_digest = publish(registry_client, "team/app", digest, signer)

    sig = registry_client.get_manifest("team/app", signature_tag(digest))
    assert sig.digest == sig_digest
    assert sig.media_type == OCI_MANIFEST_MEDIA_TYPE
    skopeo = verifiers.skopeo(
        "team/app:v1", signer.public_pem, identity="registry.signet.test/team/app"
    )
    assert skopeo.returncode == 0, skopeo.stderr
    assert (tmp_path / "copy-1" / "manifest.json").is_file()
    cosign = verifiers.cosign("team/app:v1", signer.public_pem)
    assert cosign.returncode == 0, cosign.stderr
    verified = json.loads(cosign.stdout)
    assert [v["critical"]["image"]["docker-manifest-digest"] for v in verified] == [digest]
    assert verified[0]["critical"]["identity"]["docker-reference"] == f"{SIGNED_DOMAIN}/team/app"


@pytest.mark.registry_server
def test_skopeo_and_cosign_reject_the_signature_under_another_key(
    tmp_path, registry_client, verifiers
):
    signer = Signer.create(tmp_path / "signer.pub")
    stranger = Signer.create(tmp_path / "stranger.pub")
    digest = push_image(registry_client, "team/app", "v1", seed="signed")
    publish(registry_client, "team/app", digest, signer)

    skopeo = verifiers.skopeo(
        "team/app:v1", stranger.public_pem, identity="registry.signet.test/team/app"
    )
    cosign = verifiers.cosign("team/app:v1", stranger.public_pem)

    assert skopeo.returncode != 0
    assert "cryptographic signature verification failed" in skopeo.stderr
    assert not (tmp_path / "copy-1" / "manifest.json").exists()
    assert cosign.returncode != 0
    assert "no matching signatures" in cosign.stderr


@pytest.mark.registry_server
def test_skopeo_and_cosign_reject_an_unsigned_image(tmp_path, registry_client, verifiers):
    signer = Signer.create(tmp_path / "signer.pub")
    signed = push_image(registry_client, "team/app", "v1", seed="signed")
    publish(registry_client, "team/app", signed, signer)
    push_image(registry_client, "team/app", "v2", seed="unsigned")

    skopeo = verifiers.skopeo(
        "team/app:v2", signer.public_pem, identity="registry.signet.test/team/app"
    )
    cosign = verifiers.cosign("team/app:v2", signer.public_pem)

    assert skopeo.returncode != 0
    assert "no signature exists" in skopeo.stderr
    assert cosign.returncode != 0
    assert "no signatures found" in cosign.stderr


@pytest.mark.registry_server
def test_skopeo_rejects_a_signature_whose_identity_is_another_repository(
    tmp_path, registry_client, verifiers
):
    signer = Signer.create(tmp_path / "signer.pub")
    digest = push_image(registry_client, "team/app", "v1", seed="signed")
    publish(registry_client, "team/app", digest, signer)

    skopeo = verifiers.skopeo(
        "team/app:v1", signer.public_pem, identity="registry.signet.test/team/other"
    )

    assert skopeo.returncode != 0
    assert 'Signature for identity \\"registry.signet.test/team/app\\" is not accepted' in (
        skopeo.stderr
    )


@pytest.mark.registry_server
def test_both_keys_verify_after_a_second_key_signs_and_the_first_re_signs(
    tmp_path, registry_client, verifiers
):
    first = Signer.create(tmp_path / "first.pub")
    second = Signer.create(tmp_path / "second.pub")
    digest = push_image(registry_client, "team/app", "v1", seed="signed")
    publish(registry_client, "team/app", digest, first)
    publish(registry_client, "team/app", digest, second)
    publish(registry_client, "team/app", digest, first)  # re-sign: replaces, not appends

    sig = registry_client.get_manifest("team/app", signature_tag(digest)).json
    assert [layer["annotations"][KEY_FINGERPRINT_ANNOTATION] for layer in sig["layers"]] == [
        first.fingerprint,
        second.fingerprint,
    ]
    for signer in (first, second):
        skopeo = verifiers.skopeo(
            "team/app:v1", signer.public_pem, identity="registry.signet.test/team/app"
        )
        assert skopeo.returncode == 0, skopeo.stderr
        cosign = verifiers.cosign("team/app:v1", signer.public_pem)
        assert cosign.returncode == 0, cosign.stderr
        assert len(json.loads(cosign.stdout)) == 1  # only that key's layer verifies
