from django.apps import AppConfig


class KmsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "kms"
    verbose_name = "Key management (KMS)"
