from django.apps import AppConfig


class RegistryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "registry"

    def ready(self) -> None:
        # accounts and audit sit below registry: they learn its models from here.
        from accounts import scopes
        from audit import services as audit
        from registry.models import Instance, Manifest, Namespace, RegistryEvent, Repository, Tag

        scopes.register(Instance, instance_path="pk")
        scopes.register(Namespace, instance_path="instance_id", namespace_path="pk")
        scopes.register(
            Repository, instance_path="namespace__instance_id", namespace_path="namespace_id"
        )
        for model in (Tag, Manifest):
            scopes.register(
                model,
                instance_path="repository__namespace__instance_id",
                namespace_path="repository__namespace_id",
            )
        scopes.register(RegistryEvent, instance_path="instance_id")
        audit.register_instance_model(Instance)
