"""Admin for image signing: policies, signatures, and the signing parts of the registry pages.

One module per admin: ``policy``, ``signature``, ``tag``, ``namespace`` (with ``filters``,
``verification`` and ``common`` beside them). They are thin callers of ``signing.services``
(and ``signing.verification``): every write, sign, re-sign, retry and delete goes through a
service, and every refusal (a ``DomainError``) becomes a form error or a message, never a
500. Changelists run a fixed number of queries whatever the row count (joins,
annotations, prefetches).
"""

from __future__ import annotations

from django.contrib import admin

from registry.models import Namespace, Tag
from signing.admin import operation, policy, signature  # noqa: F401  (they register their models)
from signing.admin.namespace import SigningNamespaceAdmin
from signing.admin.tag import SigningTagAdmin

# The registry admin does not know about signing (registry never imports signing). The tag
# and namespace pages with signing's columns, filters and buttons are subclasses of
# registry.admin's, registered here in their place: registry's are registered first
# because ``signing`` comes after ``registry`` in INSTALLED_APPS.
admin.site.unregister(Tag)
admin.site.register(Tag, SigningTagAdmin)
admin.site.unregister(Namespace)
admin.site.register(Namespace, SigningNamespaceAdmin)
# The admin home with the signing overview (signing.admin.dashboard) above the app list.
admin.site.index_template = "admin/signing/index.html"
