"""Push a tiny test image into an instance's registry and report whether Signet signed it.

The namespace (the repository's first segment) must exist in Signet unless
``--create-namespace`` is given: a push would otherwise create it silently. When nothing
will sign the image (no policy, a disabled policy, a key or grant problem) the command
says so right after the push instead of waiting; otherwise it waits for the signature
the registry's push notification starts.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.errors import DomainError
from registry import services as registry_services
from registry.models import Instance, Namespace, Tag
from registry.reference import namespace_of, validate_repository_name, validate_tag
from registry.sample_images import push_image
from signing.models import Signature, SignatureStatus, SigningPolicy
from signing.selectors import policy_health

_POLICY_HINT = "add one under Admin > Signing > Signing policies, or POST /api/v1/signing/policies/"


class Command(BaseCommand):
    help = (
        "Push a tiny test image (one small layer, no docker daemon needed) to a registry "
        "instance, then wait for Signet to sign it and report the outcome. Pushing into a "
        "namespace Signet does not know is refused unless --create-namespace is given; "
        "when the namespace has no enabled signing policy the command says so at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--instance",
            default="demo",
            help="Name of the registry instance to push to (Admin > Registry > Instances; "
            "default: demo, the one `make run` creates).",
        )
        parser.add_argument(
            "--repository",
            default="demo/hello",
            help="Repository as <namespace>/<name> (default: demo/hello). Its first segment "
            "is the namespace, which must already exist in Signet.",
        )
        parser.add_argument("--tag", default="v1", help="Tag to push (default: v1).")
        parser.add_argument(
            "--seed",
            default=None,
            help="Text the image's content is derived from; the same seed gives the same "
            "digest, a new one a new image (default: demo-<tag>).",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=20.0,
            help="Seconds to wait for the signature after the push (default: 20).",
        )
        parser.add_argument(
            "--create-namespace",
            action="store_true",
            help="Create the namespace in Signet first if it does not exist (without this "
            "flag an unknown namespace is an error and nothing is pushed).",
        )

    def handle(self, *args, **options) -> None:
        instance = self._instance(options["instance"])
        repository, tag = self._reference(options["repository"], options["tag"])
        namespace = self._namespace(instance, repository, options["create_namespace"])
        image = f"{instance.default_domain}/{repository}:{tag}"
        try:
            digest = push_image(
                instance.registry_client(),
                repository,
                tag,
                seed=options["seed"] or f"demo-{tag}",
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        reason = self._not_signed_reason(namespace, f"Pushed {image} ({digest})")
        if reason:
            self.stdout.write(
                self.style.WARNING(f"Pushed {image} ({digest}), not signed: {reason}")
            )
            return
        self.stdout.write(f"Pushed {image} ({digest}); waiting for its signature...")
        self._wait(instance, repository, tag, digest, image, options["wait"])

    # --- before the push -----------------------------------------------------------------

    def _instance(self, name: str) -> Instance:
        instance = Instance.objects.filter(name=name).first()
        if instance is None:
            known = ", ".join(Instance.objects.order_by("name").values_list("name", flat=True))
            raise CommandError(
                f"No registry instance named {name!r}"
                + (f" (instances: {known})." if known else "; add one first.")
            )
        return instance

    def _reference(self, repository: str, tag: str) -> tuple[str, str]:
        try:
            validate_repository_name(repository)
            validate_tag(tag)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if namespace_of(repository) is None:
            raise CommandError(
                f"Repository {repository!r} has no namespace: give it as "
                "<namespace>/<name>, e.g. team-a/app."
            )
        return repository, tag

    def _namespace(self, instance: Instance, repository: str, create: bool) -> Namespace:
        name = namespace_of(repository)
        assert name is not None  # checked by _reference
        namespace = Namespace.objects.filter(instance=instance, name=name).first()
        if namespace is not None:
            return namespace
        if not create:
            raise CommandError(
                f"Namespace {name!r} does not exist in instance {instance.name}; nothing was "
                "pushed. Create it (Admin > Registry > Namespaces, or POST "
                "/api/v1/registry/namespaces/) or pass --create-namespace."
            )
        try:
            namespace = registry_services.create_namespace(instance=instance, name=name)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Created namespace {name} in instance {instance.name}.")
        return namespace

    # --- after the push ------------------------------------------------------------------

    def _not_signed_reason(self, namespace: Namespace, pushed: str) -> str:
        """Why nothing will sign the image (said at once instead of waiting): a missing or
        disabled policy is a setting, a key or grant problem an error."""
        policy = (
            SigningPolicy.objects.select_related("key")
            .defer("key__sealed_private_key")
            .filter(namespace=namespace)
            .first()
        )
        if policy is None:
            return f"namespace {namespace.name} has no signing policy; {_POLICY_HINT}."
        if policy.disabled:
            return (
                f"the signing policy {policy.name} of namespace {namespace.name} is disabled "
                "(new pushes are not signed; sign it from Admin > Registry > Tags)."
            )
        health = policy_health(policy)
        if not health.ok:
            raise CommandError(f"{pushed}, not signed: {health.message}")
        return ""

    def _wait(
        self, instance: Instance, repository: str, tag: str, digest: str, image: str, wait: float
    ) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            signature = (
                Signature.objects.filter(
                    manifest__repository__name=repository,
                    manifest__digest=digest,
                    manifest__repository__namespace__instance=instance,
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
        recorded = Tag.objects.filter(
            repository__namespace__instance=instance, repository__name=repository, name=tag
        ).exists()
        if recorded:
            raise CommandError(
                f"{image} was recorded but not yet signed after {wait:.0f}s; is a signing "
                "worker running (see /healthz and the admin home's work in progress)?"
            )
        raise CommandError(
            f"{image} was not recorded after {wait:.0f}s: Signet has not received the "
            "registry's push notification. Check the registry's notifications endpoint "
            "(Admin > Registry > Instances shows the snippet) and its token."
        )
