"""Create the development admin and the demo story. Safe to run again.

Demo data: an enabled RSA-2048 KMS key, the registry signing service authorized, a
registry instance ``demo`` for the local registry that ``make run`` starts, a namespace
``demo`` and a signing policy on it. With ``--registry-config`` it also writes that
registry's config, with notifications pointed at this Signet and a fresh webhook token.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError

from audit.context import command_actor
from config.errors import DomainError
from kms import services as kms_services
from kms.models import AuthorizedService, Key, KeyUsage
from registry import services as registry_services
from registry.models import Instance, Namespace
from signing.models import SigningPolicy
from signing.services.policies import create_policy

DEMO_KEY_ALIAS = "demo-signing-key"
DEMO_INSTANCE = "demo"
DEMO_NAMESPACE = "demo"
DEMO_POLICY = "demo-policy"


def registry_config(*, storage: Path, address: str, notifications: dict) -> str:
    host, port = address.rsplit(":", 1)
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: {host}:{port}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    return "\n".join(lines) + "\n" + registry_services.to_yaml(notifications) + "\n"


class Command(BaseCommand):
    help = "Create an admin user (login printed once) and demo data for local development."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--registry-address", default="127.0.0.1:5000")
        parser.add_argument("--signet-url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--registry-config",
            type=Path,
            default=None,
            help="Write the local registry's config here (rotates the demo webhook token).",
        )

    @command_actor("manage.py bootstrap_demo")
    def handle(
        self,
        *args,
        username: str,
        registry_address: str,
        signet_url: str,
        registry_config: Path | None,
        **options,
    ) -> None:
        try:
            self._handle(username, registry_address, signet_url.rstrip("/"), registry_config)
        except DomainError as exc:
            raise CommandError(exc.message) from None

    def _handle(self, username, registry_address, signet_url, config_path) -> None:
        admin = self._ensure_admin(username)
        key = self._ensure_demo_key(admin)
        self._authorize_registry_signing(admin)
        instance = self._ensure_demo_instance(registry_address)
        self._ensure_demo_policy(instance=instance, key=key, admin=admin)
        if config_path is not None:
            self._write_registry_config(
                instance=instance,
                signet_url=signet_url,
                registry_address=registry_address,
                config_path=config_path,
            )

    def _ensure_admin(self, username: str) -> AbstractBaseUser:
        User = get_user_model()
        admin = User.objects.filter(username=username).first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Admin login (shown once): username {username}  password {password}"
                )
            )
        else:
            self.stdout.write(
                f"Admin user {username!r} exists; its password was printed when it was created "
                f"(reset it with: .venv/bin/python manage.py changepassword {username})."
            )
        return admin

    def _ensure_demo_key(self, admin: AbstractBaseUser) -> Key:
        key = Key.objects.filter(alias=DEMO_KEY_ALIAS).first()
        if key is None:
            key = kms_services.create_key(
                alias=DEMO_KEY_ALIAS,
                description="Demo RSA-2048 key for signing images (created by make run).",
                key_usage=KeyUsage.RSA_2048,
                created_by=admin,
            )
            self.stdout.write(f"Created demo KMS key {key.alias} ({key.key_id}).")
        return key

    def _authorize_registry_signing(self, admin: AbstractBaseUser) -> None:
        kms_services.grant_service_authorization(
            service=AuthorizedService.REGISTRY_SIGNING,
            granted_by=admin,
            note="Granted by make run for the demo.",
        )

    def _ensure_demo_instance(self, registry_address: str) -> Instance:
        instance = Instance.objects.filter(name=DEMO_INSTANCE).first()
        if instance is None:
            instance, _token = registry_services.create_instance(
                name=DEMO_INSTANCE,
                backend_url=f"http://{registry_address}",
                default_domain=registry_address,
                description="The local registry started by make run.",
            )
            self.stdout.write(
                f"Created registry instance {instance.name} ({instance.backend_url})."
            )
        return instance

    def _ensure_demo_policy(self, *, instance: Instance, key: Key, admin: AbstractBaseUser) -> None:
        """The demo namespace, and its policy while the demo key can sign."""
        namespace = Namespace.objects.filter(instance=instance, name=DEMO_NAMESPACE).first()
        if namespace is None:
            namespace = registry_services.create_namespace(instance=instance, name=DEMO_NAMESPACE)
        if (
            not SigningPolicy.objects.filter(namespace=namespace).exists()
            and key.state == "Enabled"
        ):
            create_policy(namespace=namespace, name=DEMO_POLICY, key=key, created_by=admin)
            self.stdout.write(
                f"Created signing policy {DEMO_POLICY} for namespace {namespace.name} "
                f"(domain {instance.default_domain})."
            )

    def _write_registry_config(
        self, *, instance: Instance, signet_url: str, registry_address: str, config_path: Path
    ) -> None:
        """Write the local registry's config with a fresh webhook token."""
        token = registry_services.rotate_webhook_token(instance=instance)
        webhook_url = signet_url + registry_services.webhook_path(instance=instance)
        notifications = registry_services.notifications_settings(
            instance=instance, token=token, webhook_url=webhook_url
        )
        config_path.parent.mkdir(parents=True, exist_ok=True)
        storage = (config_path.parent / "data").resolve()
        text = registry_config(
            storage=storage, address=registry_address, notifications=notifications
        )
        # Created 0600 from the start: it holds the webhook token.
        descriptor = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as config_file:
            config_file.write(text)
        self.stdout.write(f"Wrote the local registry's config to {config_path}.")
