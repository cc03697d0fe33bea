"""KMS operations. Admin, API, commands and clients all call these functions.

By concern: ``keys`` (create, describe), ``states`` (enable, disable, deletion),
``purge``, ``authorization`` (which services may use keys), ``operations`` (sign, verify,
public key), ``rotation`` (the master key) and ``material`` (the keyring and the cache of
unsealed keys); reads are in ``kms.selectors``. The names below are re-exported for the
other apps; inside ``kms`` import from the concrete module.

Nothing from ``operations``, ``material`` or ``rotation`` is re-exported: they touch
private keys, and the import-linter contract that keeps signing away from them can only
see an import of the submodule itself. Callers that may use them import
``kms.services.operations`` (or ``material``, ``rotation``) by name.
"""

from kms.selectors import describe_key, get_key, list_keys
from kms.services.authorization import (
    active_service_authorization,
    grant_service_authorization,
    is_service_authorized,
    require_service_authorization,
    revoke_service_authorization,
)
from kms.services.keys import (
    MAX_DESCRIPTION_BYTES,
    RESERVED_ALIAS_PREFIX,
    create_key,
    update_key_description,
    validate_key_fields,
)
from kms.services.purge import purge_deleted_keys
from kms.services.states import (
    MAX_PENDING_WINDOW_DAYS,
    MIN_PENDING_WINDOW_DAYS,
    cancel_key_deletion,
    disable_key,
    enable_key,
    schedule_key_deletion,
)

__all__ = [
    "MAX_DESCRIPTION_BYTES",
    "MAX_PENDING_WINDOW_DAYS",
    "MIN_PENDING_WINDOW_DAYS",
    "RESERVED_ALIAS_PREFIX",
    "active_service_authorization",
    "cancel_key_deletion",
    "create_key",
    "describe_key",
    "disable_key",
    "enable_key",
    "get_key",
    "grant_service_authorization",
    "is_service_authorized",
    "list_keys",
    "purge_deleted_keys",
    "require_service_authorization",
    "revoke_service_authorization",
    "schedule_key_deletion",
    "update_key_description",
    "validate_key_fields",
]
