"""No audit event ever holds a secret: after a session of sensitive operations, the whole
log (as the API and the admin show it, and as stored) holds none of them."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse

from audit.models import AuditEvent
from kms import crypto
from kms import services as kms_services
from kms.models import AuthorizedService, Key
from kms.services import material, rotation
from registry import services as registry_services
from registry.models import Instance
from signing import services as signing_services
from tests.audit.conftest import REGISTRY_SECRET
from tests.audit.support import NAMESPACE, token_client
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def _private_forms(key: Key) -> list[str]:
    stored = Key.objects.get(pk=key.pk)
    sealed = bytes(stored.sealed_private_key)
    der = crypto.open_sealed(
        sealed,
        keyring=material.master_keyring(),
        key_id=str(key.key_id),
        version=stored.master_key_version,
    )
    pem = (
        serialization.load_der_private_key(der, password=None)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    body = "".join(pem.splitlines()[1:-1])
    return [
        base64.b64encode(der).decode()[:40],
        der.hex()[:40],
        body[:40],
        body[-40:],
        base64.b64encode(sealed).decode()[:40],
        sealed.hex()[:40],
    ]


def _master_key_parts(text: str) -> list[str]:
    return [entry.split(":", 1)[1] for entry in text.split(",")]


def test_no_event_holds_a_token_password_private_key_or_master_key(
    settings, admin_client, admin_user, instance_and_token
):
    instance, first_token = instance_and_token
    second_token = registry_services.rotate_webhook_token(instance=instance)
    _, api_token = registry_services.create_instance(
        name="other",
        backend_url="http://127.0.0.1:1",
        default_domain="other.example.test",
        auth_type="bearer",
        secret="bearer-secret-9911",
    )
    namespace = registry_services.create_namespace(instance=instance, name=NAMESPACE)
    keys = [make_key("secret-test-1"), make_key("secret-test-2")]
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    signing_services.create_policy(namespace=namespace, name="team-policy", key=keys[0])
    old_ring = settings.KMS_MASTER_KEY
    forbidden = [
        first_token,
        second_token,
        api_token,
        REGISTRY_SECRET,
        "bearer-secret-9911",
        "PRIVATE KEY",
        *_master_key_parts(old_ring),
        *(_private_forms(key) for key in keys),
    ]
    settings.KMS_MASTER_KEY = crypto.generate_master_key_text(2) + "," + old_ring
    rotation.rotate_master_key()
    forbidden += [*_master_key_parts(settings.KMS_MASTER_KEY), *_private_forms(keys[0])]
    for sealed_instance in Instance.objects.exclude(sealed_secret=None):
        forbidden.append(base64.b64encode(bytes(sealed_instance.sealed_secret)).decode()[:40])
    forbidden += list(Instance.objects.values_list("webhook_token_hash", flat=True))
    forbidden = [
        item for group in forbidden for item in ([group] if isinstance(group, str) else group)
    ]

    stored = json.dumps(list(AuditEvent.objects.values()), cls=DjangoJSONEncoder)
    listed = token_client(admin_user).get("/api/v1/audit/events/?limit=1000")
    responses = [
        admin_client.get(reverse("admin:audit_auditevent_change", args=[pk]))
        for pk in AuditEvent.objects.values_list("pk", flat=True)
    ]
    responses.append(admin_client.get(reverse("admin:audit_auditevent_changelist")))
    assert {response.status_code for response in responses} == {200}
    pages = "".join(response.content.decode() for response in responses)

    recorded = set(AuditEvent.objects.values_list("action", flat=True))
    assert {
        "registry.instance.created",
        "registry.instance.webhook_token_rotated",
        "kms.key.created",
        "kms.service_authorization.granted",
        "signing.policy.created",
        "kms.master_key.rotated",
    } <= recorded
    assert listed.status_code == 200
    assert listed.json()["count"] == AuditEvent.objects.count()
    assert pages.count('class="audit-json"') >= len(recorded)
    for dump in (stored, listed.content.decode(), pages):
        for secret in forbidden:
            assert secret not in dump, secret[:12]
