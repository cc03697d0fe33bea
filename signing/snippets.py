"""What a user needs to verify a namespace's images: shown by the admin and the API."""

from __future__ import annotations

import json

from signing.models import SigningPolicy


def public_key_file_name(policy: SigningPolicy) -> str:
    """The name the KMS admin's public-key download saves under."""
    return f"{policy.key.alias}.pem"


def registries_d_file_name(policy: SigningPolicy) -> str:
    """Where the registries.d entry goes. containers reads every ``*.yaml`` file of
    /etc/containers/registries.d, so the name is free; what matches the images is the
    ``docker:`` key (host[:port]). One name, ':' spelt '_', wherever it is shown."""
    return f"/etc/containers/registries.d/{policy.domain.replace(':', '_')}.yaml"


def verification_snippets(policy: SigningPolicy) -> dict[str, str]:
    """What a user needs to verify the namespace's images with skopeo/podman or cosign.

    Save ``public_key_pem`` as ``public_key_file``; the policy.json scope is the
    domain the policy signs for (``<domain>/<namespace>``), the identity rule
    ``matchRepository`` (users pull by that domain name).
    """
    namespace = policy.namespace
    key_file = public_key_file_name(policy)
    scope = f"{policy.domain}/{namespace.name}"
    policy_json = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                scope: [
                    {
                        "type": "sigstoreSigned",
                        "keyPath": f"/etc/containers/keys/{key_file}",
                        "signedIdentity": {"type": "matchRepository"},
                    }
                ]
            }
        },
    }
    return {
        "public_key_file": key_file,
        "policy_json": json.dumps(policy_json, indent=2) + "\n",
        "registries_d": (
            f"# {registries_d_file_name(policy)}\n"
            f'docker:\n  "{policy.domain}":\n    use-sigstore-attachments: true\n'
        ),
        "cosign_command": (
            f"cosign verify --key {key_file} --insecure-ignore-tlog {scope}/<repository>:<tag>"
        ),
    }
