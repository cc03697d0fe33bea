from django.apps import AppConfig


class SigningConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "signing"

    def ready(self) -> None:
        # accounts sits below signing: it learns how policies and signatures are scoped here.
        from django.core.signals import request_started

        from accounts import scopes
        from config.metrics import register_collector
        from kms import dependants
        from signing.kms_dependants import policies_needing_service, policies_using_keys
        from signing.metrics import WaitingSignatures
        from signing.models import Signature, SigningOperation, SigningPolicy
        from signing.services.recovery import start_serving_worker

        scopes.register(
            SigningPolicy, instance_path="namespace__instance_id", namespace_path="namespace_id"
        )
        scopes.register(
            Signature,
            instance_path="policy__namespace__instance_id",
            namespace_path="policy__namespace_id",
        )
        # kms sits below signing: its admin learns here which policies a key or the
        # service authorization keeps signing, to name them before disabling or revoking.
        dependants.register_key_dependants(policies_using_keys)
        dependants.register_service_dependants(policies_needing_service)
        # An operation belongs to its instance and, when it covers one namespace, to it.
        scopes.register(
            SigningOperation, instance_path="instance_id", namespace_path="namespace_id"
        )
        # The waiting work, read from the database at every scrape of /metrics.
        register_collector("signing.waiting", WaitingSignatures())
        # A web process forked after SERVING_STARTED_HOOKS ran (gunicorn --preload), or
        # whose database was away then, becomes a signing worker on its first request.
        request_started.connect(start_serving_worker, dispatch_uid="signing.serving_worker")
