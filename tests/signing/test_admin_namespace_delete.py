"""Deleting a namespace that has a signing policy in the admin (issue 12, point 3): the
page says to delete the policy first and links to its delete page, never a permission
error; the single and the bulk delete alike."""

from __future__ import annotations

import pytest
from django.urls import reverse

from registry import services as registry_services
from registry.models import Namespace
from signing.models import Signature, SigningPolicy

pytestmark = pytest.mark.django_db

NAMESPACES = reverse("admin:registry_namespace_changelist")
CONFIRM = 'value="Yes, I\u2019m sure"'  # Django's delete button


def delete_page(namespace: Namespace) -> str:
    return reverse("admin:registry_namespace_delete", args=[namespace.pk])


def test_deleting_a_namespace_with_a_policy_links_to_the_policy_delete_page(
    admin_client, policy, namespace, push_image_event
):
    push_image_event(tag="v1")  # recorded: its signature waits (signing runs after commit)

    page = admin_client.get(delete_page(namespace))
    body = page.content.decode()

    assert page.status_code == 200
    assert "permission" not in body
    assert "Delete the signing policy first" in body
    link = reverse("admin:signing_signingpolicy_delete", args=[policy.pk])
    assert f'id="delete-policy-link" class="delete-policy-link" href="{link}"' in body
    assert "0 signed, 1 pending,\n      0 failed signature(s)" in body
    assert CONFIRM not in body  # nothing to confirm until the policy goes


def test_posting_the_delete_of_a_namespace_with_a_policy_deletes_nothing(
    admin_client, policy, namespace, push_image_event
):
    push_image_event(tag="v1")

    response = admin_client.post(delete_page(namespace), {"post": "yes"})

    assert response.status_code == 200
    assert "Delete the signing policy first" in response.content.decode()
    assert Namespace.objects.filter(pk=namespace.pk).exists()
    assert SigningPolicy.objects.exists() and Signature.objects.exists()


def test_once_the_policy_is_deleted_the_namespace_delete_is_offered_and_works(
    admin_client, policy, namespace, push_image_event
):
    push_image_event(tag="v1")
    admin_client.post(
        reverse("admin:signing_signingpolicy_delete", args=[policy.pk]), {"post": "yes"}
    )

    page = admin_client.get(delete_page(namespace)).content.decode()
    deleted = admin_client.post(delete_page(namespace), {"post": "yes"})

    assert "delete-policy-link" not in page and CONFIRM in page
    assert deleted.status_code == 302
    assert not Namespace.objects.filter(pk=namespace.pk).exists()


def test_the_bulk_delete_names_the_policies_to_delete_first(
    admin_client, policy, namespace, instance
):
    plain = registry_services.create_namespace(instance=instance, name="plain")
    data = {"action": "delete_selected", "_selected_action": [namespace.pk, plain.pk]}

    page = admin_client.post(NAMESPACES, data)
    confirmed = admin_client.post(NAMESPACES, {**data, "post": "yes"})
    body = page.content.decode()

    assert page.status_code == 200
    assert "permission" not in body
    assert "Delete the signing policy first" in body
    assert reverse("admin:signing_signingpolicy_delete", args=[policy.pk]) in body
    assert confirmed.status_code == 200
    assert Namespace.objects.count() == 2


def test_a_namespace_without_a_policy_is_deleted_after_the_usual_confirmation(
    admin_client, instance
):
    plain = registry_services.create_namespace(instance=instance, name="plain")
    data = {"action": "delete_selected", "_selected_action": [plain.pk]}

    page = admin_client.post(NAMESPACES, data).content.decode()
    confirmed = admin_client.post(NAMESPACES, {**data, "post": "yes"})

    assert CONFIRM in page and "delete-policy-link" not in page
    assert confirmed.status_code == 302
    assert not Namespace.objects.exists()
