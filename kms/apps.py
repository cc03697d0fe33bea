from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class KmsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "kms"
    verbose_name = "Key management (KMS)"

    def ready(self) -> None:
        from accounts import scopes
        from kms.models import Key

        check_master_key()
        # Keys belong to no registry instance: a membership's role alone decides.
        scopes.register_unscoped(Key)


def check_master_key() -> None:
    """Stop the process on a malformed ``KMS_MASTER_KEY`` (settings only read it: config
    sits below kms); an empty one is the settings' concern (required in production)."""
    from kms.crypto import MasterKeyring, MasterKeyringError

    if not settings.KMS_MASTER_KEY:
        return
    try:
        MasterKeyring.parse(settings.KMS_MASTER_KEY)
    except MasterKeyringError as exc:  # the message names the entry, never key bytes
        raise ImproperlyConfigured(f"{exc} (see .env.example).") from None
