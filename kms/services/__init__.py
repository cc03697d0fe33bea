"""KMS operations. Admin, API, commands and clients all call these functions.

By concern: ``keys`` (create, describe), ``states`` (enable, disable, deletion),
``purge``, ``authorization`` (which services may use keys), ``operations`` (sign, verify,
public key), ``rotation`` (the master key) and ``material`` (the keyring and the cache of
unsealed keys); reads are in ``kms.selectors``. The names below are re-exported for the
other apps; inside ``kms`` import from the concrete module.
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
from kms.services.material import key_cache, master_keyring
from kms.services.operations import PublicKeyInfo, get_public_key, sign, verify
from kms.services.purge import purge_deleted_keys
from kms.services.rotation import RotationResult, rotate_master_key
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
    "PublicKeyInfo",
    "RotationResult",
    "active_service_authorization",
    "cancel_key_deletion",
    "create_key",
    "describe_key",
    "disable_key",
    "enable_key",
    "get_key",
    "get_public_key",
    "grant_service_authorization",
    "is_service_authorized",
    "key_cache",
    "list_keys",
    "master_keyring",
    "purge_deleted_keys",
    "require_service_authorization",
    "revoke_service_authorization",
    "rotate_master_key",
    "schedule_key_deletion",
    "sign",
    "update_key_description",
    "validate_key_fields",
    "verify",
]
