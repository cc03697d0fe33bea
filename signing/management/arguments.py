"""Command-line arguments the signing commands share."""

from __future__ import annotations

from django.core.management.base import CommandError

from config.ids import is_id
from registry.models import Instance


def instance_argument(ref: str) -> Instance:
    """The instance ``--instance`` names (its name or id); CommandError listing the known
    ones otherwise."""
    instance = (
        Instance.objects.filter(pk=int(ref)).first()
        if is_id(ref)
        else Instance.objects.filter(name=ref).first()
    )
    if instance is None:
        names = ", ".join(Instance.objects.order_by("name").values_list("name", flat=True)[:20])
        raise CommandError(f"No registry instance {ref!r}. Known instances: {names or '(none)'}.")
    return instance
