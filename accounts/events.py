"""Membership changes, announced for the audit log.

``accounts`` sits below ``audit`` (the audit log's read rule, ``audit.scoping``, reads the
memberships), so the services do not call ``audit`` themselves: they send these signals
inside the transaction of the change and ``audit`` records them (its receivers are
connected in its ``AppConfig.ready()``). Arguments: ``membership``, ``actor``,
``details`` and, for a change, ``changes`` (``{"field": [before, after]}``).
"""

from django.dispatch import Signal

membership_granted = Signal()
membership_changed = Signal()
# Sent before the row is deleted, so the event keeps its id and what it granted.
membership_revoked = Signal()
