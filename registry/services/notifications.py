"""The registry's side of the webhook: the ``notifications:`` block of its config.yml.

Emitted with PyYAML in block style, list items indented under their key (the layout of
Distribution's own documentation). Values carrying the token are always double-quoted.
"""

from __future__ import annotations

from typing import Any

import yaml
from django.urls import reverse

from registry.models import Instance


class _Quoted(str):
    """A string always written double-quoted (a header value with the token in it)."""


class _ConfigDumper(yaml.SafeDumper):
    """Block-style YAML whose sequences are indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_quoted(dumper: yaml.SafeDumper, value: _Quoted) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style='"')


_ConfigDumper.add_representer(_Quoted, _represent_quoted)


def to_yaml(value: Any) -> str:
    """Block-style YAML for a configuration made of dicts, lists, strings, numbers and
    booleans (keys in the given order), without a final newline."""
    text = yaml.dump(
        value,
        Dumper=_ConfigDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=1_000_000,  # never fold a long value (a URL, a token) over lines
    )
    return text.rstrip("\n")


def webhook_path(*, instance: Instance) -> str:
    return reverse("registry-webhook", kwargs={"instance_name": instance.name})


def notifications_settings(*, instance: Instance, token: str, webhook_url: str) -> dict:
    """The registry's ``notifications:`` section as data (see ``notifications_config``)."""
    return {
        "notifications": {
            "events": {"includereferences": True},
            "endpoints": [
                {
                    "name": f"signet-{instance.name}",
                    "url": webhook_url,
                    "headers": {"Authorization": [_Quoted(f"Bearer {token}")]},
                    "timeout": "2s",
                    "threshold": 5,
                    "backoff": "1s",
                    "ignore": {
                        "mediatypes": ["application/octet-stream"],
                        "actions": ["pull"],
                    },
                }
            ],
        }
    }


def notifications_config(*, instance: Instance, token: str, webhook_url: str) -> str:
    """The exact ``notifications:`` block to paste into the registry's config.yml.

    ``webhook_url`` is the absolute URL of ``webhook_path(instance=...)`` as the registry
    reaches Signet (for example ``request.build_absolute_uri(webhook_path(...))``).
    """
    data = notifications_settings(instance=instance, token=token, webhook_url=webhook_url)
    return to_yaml(data) + "\n"
