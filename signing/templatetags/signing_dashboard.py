"""``{% signing_overview %}``: the signing overview on the admin home (signing.admin.dashboard)."""

from __future__ import annotations

from typing import Any

from django import template

from signing.admin.dashboard import overview

register = template.Library()


@register.inclusion_tag("admin/signing/overview.html", takes_context=True)
def signing_overview(context: dict[str, Any]) -> dict[str, Any]:
    return {"overview": overview(context["request"].user)}
