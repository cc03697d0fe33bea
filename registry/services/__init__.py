"""Registry operations: the webhook, admin, API and ``sync_registry`` all call these.

By concern (code inside ``registry`` imports from these modules directly):

- ``instances``: create, change and delete instances; re-seal their secrets;
- ``instance_rules``: the rules an instance's fields follow (``validate_instance_fields``);
- ``webhook_tokens``: the token a registry authenticates its notifications with;
- ``notifications``: the ``notifications:`` block of the registry's config.yml;
- ``namespaces``: create, change and delete namespaces;
- ``events``: parse (validate) notification envelopes and image index documents;
- ``recording``: write pushes and deletes, calling the push and delete ``handlers``
  (the extension points other apps register in settings);
- ``sync``: import what the registry holds and Signet has not recorded.

Reads are in ``registry.selectors``, errors in ``registry.errors``. This package
re-exports the public names for callers outside the registry app.
"""

from registry.errors import (
    DeleteHandlerFailed,
    DomainNameTaken,
    InstanceExists,
    InstanceInUse,
    InstanceMisconfigured,
    InstanceNotFound,
    NamespaceExists,
)
from registry.reference import is_signature_tag, namespace_of
from registry.selectors import get_instance, manifests_queryset, tags_queryset
from registry.services.events import (
    MAX_EVENT_ID_LENGTH,
    WEBHOOK_CONTENT_TYPES,
    Event,
    Reference,
    parse_envelope,
    parse_index_children,
)
from registry.services.instance_rules import validate_instance_fields
from registry.services.instances import (
    create_instance,
    delete_instance,
    reseal_instance_secrets,
    update_instance,
)
from registry.services.namespaces import create_namespace, delete_namespace, update_namespace
from registry.services.notifications import (
    notifications_config,
    notifications_settings,
    to_yaml,
    webhook_path,
)
from registry.services.recording import RecordResult, record_events, record_manifest
from registry.services.sync import SyncResult, resync_repository, sync_instance
from registry.services.webhook_tokens import (
    authenticate_webhook,
    authenticated_webhook_instance,
    hash_webhook_token,
    rotate_webhook_token,
)

__all__ = [
    "MAX_EVENT_ID_LENGTH",
    "WEBHOOK_CONTENT_TYPES",
    "DeleteHandlerFailed",
    "DomainNameTaken",
    "Event",
    "InstanceExists",
    "InstanceInUse",
    "InstanceMisconfigured",
    "InstanceNotFound",
    "NamespaceExists",
    "RecordResult",
    "Reference",
    "SyncResult",
    "authenticate_webhook",
    "authenticated_webhook_instance",
    "create_instance",
    "create_namespace",
    "delete_instance",
    "delete_namespace",
    "get_instance",
    "hash_webhook_token",
    "is_signature_tag",
    "manifests_queryset",
    "namespace_of",
    "notifications_config",
    "notifications_settings",
    "parse_envelope",
    "parse_index_children",
    "record_events",
    "record_manifest",
    "reseal_instance_secrets",
    "resync_repository",
    "rotate_webhook_token",
    "sync_instance",
    "tags_queryset",
    "to_yaml",
    "update_instance",
    "update_namespace",
    "validate_instance_fields",
    "webhook_path",
]
