"""Create the development admin and demo data. Safe to run again."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from kms import services as kms_services
from kms.models import AuthorizedService, Key, KeyUsage

DEMO_KEY_ALIAS = "demo-signing-key"


class Command(BaseCommand):
    help = "Create an admin user (login printed once) and demo data for local development."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options) -> None:
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

        key = Key.objects.filter(alias=DEMO_KEY_ALIAS).first()
        if key is None:
            key = kms_services.create_key(
                alias=DEMO_KEY_ALIAS,
                description="Demo RSA-2048 key for signing images (created by make run).",
                key_usage=KeyUsage.RSA_2048,
                created_by=admin,
            )
            self.stdout.write(f"Created demo KMS key {key.alias} ({key.key_id}).")
        kms_services.grant_service_authorization(
            service=AuthorizedService.REGISTRY_SIGNING,
            granted_by=admin,
            note="Granted by make run for the demo.",
        )
