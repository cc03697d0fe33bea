"""Push a tiny demo image into the local registry and wait until Signet has signed it."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from config.errors import DomainError
from registry.models import Instance, Tag
from registry.sample_images import push_image
from signing.models import Signature, SignatureStatus


class Command(BaseCommand):
    help = "Push demo/hello:<tag> to the demo instance's registry and wait for its signature."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--instance", default="demo")
        parser.add_argument("--repository", default="demo/hello")
        parser.add_argument("--tag", default="v1")
        parser.add_argument("--wait", type=float, default=20.0, help="Seconds to wait.")

    def handle(self, *args, instance: str, repository: str, tag: str, wait: float, **options):
        target = Instance.objects.filter(name=instance).first()
        if target is None:
            raise CommandError(f"No registry instance named {instance!r}.")
        try:
            digest = push_image(target.registry_client(), repository, tag, seed=f"demo-{tag}")
        except DomainError as exc:
            raise CommandError(exc.message) from None
        image = f"{target.default_domain}/{repository}:{tag}"
        self.stdout.write(f"Pushed {image} ({digest}); waiting for the registry's push event...")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            signature = (
                Signature.objects.filter(
                    manifest__repository__name=repository,
                    manifest__digest=digest,
                    manifest__repository__namespace__instance=target,
                )
                .select_related("policy__key")
                .first()
            )
            if signature and signature.status == SignatureStatus.SIGNED:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Signed {image} with key {signature.policy.key.alias}; "
                        "see it in the admin under Registry > Tags."
                    )
                )
                return
            if signature and signature.status == SignatureStatus.FAILED:
                raise CommandError(f"Signing {image} failed: {signature.failure_reason}")
            time.sleep(0.25)
        recorded = Tag.objects.filter(repository__name=repository, name=tag).exists()
        raise CommandError(
            f"{image} was {'recorded but not yet signed' if recorded else 'not yet recorded'} "
            f"after {wait:.0f}s; is Signet receiving the registry's notifications?"
        )
