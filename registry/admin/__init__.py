"""Admin for registry instances and what Signet recorded from them, one module per concern:
``instances``, ``namespaces``, ``records`` (read-only: repositories, tags, manifests,
events) and ``common`` (filters, mixins, the digest cell).

Writes go through ``registry.services``. Every changelist runs a fixed number of queries
whatever the row count (``list_select_related``, annotations, one-query filters).
Credentials and the webhook token hash are never shown.

Importing this package registers every admin. The signing app registers its own tag and
namespace admins in place of ``TagAdmin`` and ``NamespaceAdmin`` (subclasses of them).
"""

from registry.admin.common import (
    ADMIN_CSS,
    DeletesRecordsMixin,
    InstanceFilter,
    NamespaceFilter,
    ReadOnlyAdmin,
    ScopedAdminMixin,
    digest_html,
    when,
)
from registry.admin.instances import InstanceAdmin, InstanceForm
from registry.admin.namespaces import NamespaceAdmin
from registry.admin.records import (
    ManifestAdmin,
    RegistryEventAdmin,
    RepositoryAdmin,
    TagAdmin,
)

__all__ = [
    "ADMIN_CSS",
    "DeletesRecordsMixin",
    "InstanceAdmin",
    "InstanceFilter",
    "InstanceForm",
    "ManifestAdmin",
    "NamespaceAdmin",
    "NamespaceFilter",
    "ReadOnlyAdmin",
    "RegistryEventAdmin",
    "RepositoryAdmin",
    "ScopedAdminMixin",
    "TagAdmin",
    "digest_html",
    "when",
]
