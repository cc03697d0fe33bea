"""The extension points of recording: handlers other apps register in settings (dotted
paths; ``registry`` never imports ``signing``).

``REGISTRY_PUSH_HANDLERS``
    ``handler(*, instance, manifests, tags, source)`` is called INSIDE the transaction that
    records a delivery (or one repository of a sync), once the pushes are written:

    - ``manifests``: ``Manifest`` rows created by this call (image manifests, image indexes
      and index children pushed by digest), ``repository__namespace__instance`` loaded;
    - ``tags``: ``Tag`` rows created or moved to another digest (``tag.manifest`` is the
      new one; the previous digest is the newest ``TagHistory.from_digest``). A tag moved
      onto a manifest that was already recorded appears here without its manifest;
    - ``source``: ``"webhook"`` for registry notifications, ``"sync"`` for images imported
      by ``sync_registry`` (images that existed before Signet or whose events were lost).
      Handlers that sign must not sign ``"sync"`` pushes automatically.

    Rows a handler writes commit together with the push. Slow work (KMS, registry calls)
    belongs in ``transaction.on_commit``. Handlers must not raise: each runs in its own
    savepoint, and if it raises anyway its writes are rolled back, the error is logged and
    counted (``handler_errors``), and the push is still recorded, so a registry retry
    cannot block the delivery queue. Work a failed handler missed is found again from
    durable state (the manifests and tags are recorded).

``REGISTRY_DELETE_HANDLERS``
    ``handler(*, instance, manifests, source)`` is called inside the transaction BEFORE the
    ``Manifest`` rows (and, by cascade, their tags) are deleted; ``source`` is
    ``"webhook"`` or ``"namespace-delete"``. Each runs in its own savepoint like a push
    handler, but a failure is not skipped: its writes are rolled back, it is logged, and
    the whole delete is refused with ``DeleteHandlerFailed`` (503; the registry
    redelivers the event, an admin or API caller tries again), so nothing the handler
    guards is orphaned. Rows of other apps that point at ``Manifest``/``Tag`` with
    ``PROTECT`` must be removed by such a handler; if a delete is still refused the event
    is recorded as ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string

from registry.errors import DeleteHandlerFailed

logger = logging.getLogger(__name__)


def call_handlers(paths: Sequence[str], *, raise_errors: bool = False, **kwargs: Any) -> int:
    """Call each handler in a savepoint; returns how many failed (logged, rolled back).

    Delete handlers pass ``raise_errors``: their work (queuing the removal of what hangs
    off the rows) must not be skipped while the rows go, so a failure refuses the whole
    delete (503; the registry redelivers the event) instead of orphaning anything.
    """
    failures = 0
    for path in paths:
        try:
            handler = import_string(path)
            with transaction.atomic():
                handler(**kwargs)
        except Exception:
            failures += 1
            logger.exception("registry handler %s failed; its changes were rolled back", path)
            if raise_errors:
                raise DeleteHandlerFailed(
                    f"Deleting is refused for now: the delete handler {path} failed (logged). "
                    "Nothing was deleted; try again."
                ) from None
    return failures
