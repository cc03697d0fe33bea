"""Reading Signet's settings from the environment (and the optional env file): one place
that turns a variable into a typed value, or stops the process with a message naming it.

``config.settings`` lists what the environment sets; the parsing rules live here.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = env.str("SIGNET_ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(_env_file).is_file():
    environ.Env.read_env(_env_file, overwrite=False)


def setting(name: str, cast, default, *, required_in_production: bool = False):
    """Read one variable, failing with its name when it is missing or malformed."""
    if required_in_production and not DEBUG and name not in env.ENVIRON:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (see .env.example).")
    try:
        return cast(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name} is malformed: {exc}") from None


try:
    DEBUG = env.bool("DEBUG", default=False)
except ValueError:
    raise ImproperlyConfigured("DEBUG is malformed: use 1/0, true/false.") from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def flag(name: str, default: bool) -> bool:
    """A strict boolean: a typo must not quietly turn a security setting off."""
    value = setting(name, env.str, "").strip().lower()
    if not value:
        return default
    if value not in _TRUE | _FALSE:
        raise ImproperlyConfigured(f"{name} is malformed: use 1/0, true/false, not {value!r}.")
    return value in _TRUE


def proxy_ssl_header() -> tuple[str, str] | None:
    """``"X-Forwarded-Proto,https"``: the header a TLS-terminating proxy sets, and its value
    for HTTPS requests. Unset: the request's own scheme counts (no proxy)."""
    value = setting("SECURE_PROXY_SSL_HEADER", env.str, "").strip()
    if not value:
        return None
    header, _, expected = (part.strip() for part in value.partition(","))
    meta = header.upper().replace("-", "_")
    if not meta.startswith("HTTP_"):
        meta = f"HTTP_{meta}"
    if not (re.fullmatch(r"HTTP_[A-Z0-9_]+", meta) and expected and "," not in expected):
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER is malformed: expected '<header>,<value>' "
            f"(e.g. X-Forwarded-Proto,https), not {value!r}."
        )
    return meta, expected


def throttle_rate(name: str, default: str) -> str | None:
    """A DRF rate "<count>/<second|minute|hour|day>" (e.g. "120/min"); "off" disables it."""
    value = setting(name, env.str, default).strip()
    if value.lower() in {"", "off", "none"}:
        return None
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) > 0 and period[:1] in {"s", "m", "h", "d"}):
        raise ImproperlyConfigured(
            f"{name} is malformed: expected '<count>/<sec|min|hour|day>' (e.g. 120/min) "
            f"or 'off', not {value!r}."
        )
    return value


def token_ttl(name: str, default: str) -> timedelta | None:
    """Days an API token lives (a positive whole number), or "never"."""
    value = setting(name, env.str, default).strip().lower()
    if value == "never":
        return None
    if not (value.isdigit() and 0 < int(value) <= 36500):
        raise ImproperlyConfigured(
            f"{name} is malformed: expected a number of days (1 to 36500) or 'never', "
            f"not {value!r}."
        )
    return timedelta(days=int(value))


def interval(name: str, default: int) -> int:
    """Seconds between two runs of a periodic task (celery beat)."""
    seconds = setting(name, env.int, default)
    if seconds < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1 (seconds).")
    return seconds
