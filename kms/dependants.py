"""What depends on KMS keys and on a service authorization, as the apps above kms know it.

kms sits below signing (it never imports it), yet disabling a key a signing policy uses,
or revoking the registry-signing authorization, breaks that policy: the next push fails to
sign. So the apps that depend on the KMS register a provider from their
``AppConfig.ready()`` (``signing`` names its policies, the namespaces they sign and the
images waiting for them), like ``accounts.scopes`` learns how their models are scoped;
the kms admin asks the providers and names what breaks on its confirmation pages before
it acts. Providers get the user so they name only what the user may see (and count the
rest).

The API's disable and revoke stay immediate: an API client confirms by calling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kms.models import Key


@dataclass(frozen=True)
class Dependant:
    """One thing that stops working: e.g. signing policy ``team-policy`` of namespace
    ``team`` (instance ``prod``), 3 images waiting to be signed by it."""

    kind: str
    name: str
    where: str
    pending: int = 0
    note: str = ""
    url: str = ""


@dataclass(frozen=True)
class Dependants:
    """What a provider found: the dependants the user may see, and how many others."""

    visible: list[Dependant]
    hidden: int = 0
    hidden_pending: int = 0

    @property
    def pending(self) -> int:
        return sum(item.pending for item in self.visible) + self.hidden_pending

    def __bool__(self) -> bool:
        return bool(self.visible) or bool(self.hidden)


# (keys, user) -> {key_id: what depends on that key}
KeyProvider = Callable[[Sequence[Key], Any], dict[str, Dependants]]
# (service, user) -> what stops working without that service's authorization
ServiceProvider = Callable[[str, Any], Dependants]

_KEY_PROVIDERS: list[KeyProvider] = []
_SERVICE_PROVIDERS: list[ServiceProvider] = []


def register_key_dependants(provider: KeyProvider) -> None:
    if provider not in _KEY_PROVIDERS:
        _KEY_PROVIDERS.append(provider)


def register_service_dependants(provider: ServiceProvider) -> None:
    if provider not in _SERVICE_PROVIDERS:
        _SERVICE_PROVIDERS.append(provider)


def _merge(found: Sequence[Dependants]) -> Dependants:
    return Dependants(
        visible=[item for part in found for item in part.visible],
        hidden=sum(part.hidden for part in found),
        hidden_pending=sum(part.hidden_pending for part in found),
    )


def key_dependants(keys: Sequence[Key], user: Any) -> dict[str, Dependants]:
    """For each key (by key id) what depends on it; keys nothing depends on are absent."""
    found: dict[str, list[Dependants]] = {}
    for provider in _KEY_PROVIDERS:
        for key_id, part in provider(keys, user).items():
            found.setdefault(str(key_id), []).append(part)
    merged = {key_id: _merge(parts) for key_id, parts in found.items()}
    return {key_id: part for key_id, part in merged.items() if part}


def service_dependants(service: str, user: Any) -> Dependants:
    return _merge([provider(service, user) for provider in _SERVICE_PROVIDERS])
