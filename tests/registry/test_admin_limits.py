"""Issue 12, point 7: no silent truncation, the rules up front.

A browser cuts a value at the input's ``maxlength`` without a word (a 61-character alias
was saved as 60, a 300-character namespace as 30). Signet's forms carry no
``maxlength``: the rules (lengths, allowed characters) are in the help text before
anything is typed, and an over-long value reaches the server, which refuses it naming
the limit and saves nothing.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from kms import services as kms_services
from kms.models import AuthorizedService, Key
from registry import services
from registry.models import Instance, Namespace
from signing.models import SigningPolicy
from tests.factories import make_key

pytestmark = pytest.mark.django_db

NAMESPACE_ADD = reverse("admin:registry_namespace_add")
INSTANCE_ADD = reverse("admin:registry_instance_add")
KEY_ADD = reverse("admin:kms_key_add")
POLICY_ADD = reverse("admin:signing_signingpolicy_add")


@pytest.fixture
def instance(db) -> Instance:
    created, _token = services.create_instance(
        name="prod", backend_url="http://127.0.0.1:9", default_domain="registry.example.com"
    )
    return created


def input_tag(page: str, name: str) -> str:
    match = re.search(rf'<(?:input|textarea)[^>]*name="{name}"[^>]*>', page)
    assert match, name
    return match.group(0)


def help_text(page: str, name: str) -> str:
    match = re.search(rf'<div class="help" id="id_{name}_helptext">\s*<div>(.*?)</div>', page, re.S)
    assert match, name
    return match.group(1)


def errors_of(response, field: str) -> list[str]:
    return list(response.context["adminform"].form.errors.get(field, []))


def test_the_namespace_form_shows_its_rules_and_lets_the_server_judge_the_length(
    admin_client, instance
):
    page = admin_client.get(NAMESPACE_ADD).content.decode()

    assert "maxlength" not in input_tag(page, "name")
    assert "maxlength" not in input_tag(page, "description")
    rules = help_text(page, "name")
    assert "2-30 characters" in rules
    assert "lowercase letters and digits" in rules

    response = admin_client.post(
        NAMESPACE_ADD, {"instance": instance.pk, "name": "a" * 300, "description": ""}
    )

    assert response.status_code == 200
    assert "Ensure this value has at most 30 characters (it has 300)." in errors_of(
        response, "name"
    )
    assert not Namespace.objects.exists()


def test_the_instance_form_refuses_a_51_character_name_naming_the_limit(admin_client):
    page = admin_client.get(INSTANCE_ADD).content.decode()
    assert "maxlength" not in page
    assert "2-50 characters" in help_text(page, "name")

    response = admin_client.post(
        INSTANCE_ADD,
        {
            "name": "a" * 51,
            "region": "ap-guangzhou",
            "description": "",
            "backend_url": "http://127.0.0.1:5000",
            "auth_type": "none",
            "username": "",
            "secret": "",
            "secret_env": "",
            "default_domain": "registry.example.com",
            "custom_domains": "",
        },
    )

    assert response.status_code == 200
    assert "Ensure this value has at most 50 characters (it has 51)." in errors_of(response, "name")
    assert not Instance.objects.exists()


def test_the_key_form_refuses_a_61_character_alias_naming_the_limit(admin_client):
    page = admin_client.get(KEY_ADD).content.decode()
    assert "maxlength" not in input_tag(page, "alias")
    assert "1-60 letters, digits" in help_text(page, "alias")

    response = admin_client.post(
        KEY_ADD,
        {
            "alias": "k" * 61,
            "description": "",
            "region": "ap-guangzhou",
            "key_usage": "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
        },
    )

    assert response.status_code == 200
    assert "Ensure this value has at most 60 characters (it has 61)." in errors_of(
        response, "alias"
    )
    assert not Key.objects.exists()


def test_the_policy_form_refuses_a_51_character_name_naming_the_limit(
    admin_client, instance, superuser
):
    kms_services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, granted_by=superuser
    )
    key = make_key("image-signing")
    namespace = services.create_namespace(instance=instance, name="team-a")
    page = admin_client.get(POLICY_ADD).content.decode()
    assert "maxlength" not in input_tag(page, "name")
    assert "2-50 lowercase letters, digits" in help_text(page, "name")

    response = admin_client.post(
        POLICY_ADD,
        {"namespace": namespace.pk, "name": "p" * 51, "key": str(key.pk), "domain": ""},
    )

    assert response.status_code == 200
    assert errors_of(response, "name") == [
        "Policy name must be 2 to 50 characters long (it is 51)."
    ]
    assert not SigningPolicy.objects.exists()
