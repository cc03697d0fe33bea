"""Settings as a freshly started Signet process computes them from an environment.

The test process has imported its settings once; these helpers start a new Python
process with exactly the environment given (nothing inherited from the test run) and
read the settings it ends up with, or run ``manage.py`` in it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[2]
PRODUCTION_EXAMPLE = BASE_DIR / ".env.production.example"

_PRINT_SETTINGS = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
from django.conf import settings
names = sys.argv[1:]
print(json.dumps({name: getattr(settings, name, "<unset>") for name in names}, default=str))
"""


def throwaway_secrets() -> dict[str, str]:
    """What an operator fills into the production example (it leaves them empty)."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "KMS_MASTER_KEY": "1:" + base64.b64encode(os.urandom(32)).decode(),
    }


def minimal_production_env(**extra: str) -> dict[str, str]:
    """DEBUG off with the required variables and no env file."""
    return {
        "DEBUG": "0",
        "ALLOWED_HOSTS": "signet.example.com",
        "SIGNET_ENV_FILE": "/nonexistent",
        **throwaway_secrets(),
        **extra,
    }


def _process_env(env: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(BASE_DIR), **env}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=_process_env(env),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_settings(env: dict[str, str], *names: str) -> dict[str, Any]:
    """The named settings of a process started with ``env``; AssertionError if it fails."""
    result = run(["-c", _PRINT_SETTINGS, *names], env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def settings_error(env: dict[str, str]) -> str:
    """The error a process started with ``env`` stops with (it must stop)."""
    result = run(["-c", _PRINT_SETTINGS, "DEBUG"], env)
    assert result.returncode != 0, result.stdout
    return result.stderr


def production_example_env(**extra: str) -> dict[str, str]:
    """The production example file, its two secrets filled in (as an operator does)."""
    assert PRODUCTION_EXAMPLE.is_file(), f"{PRODUCTION_EXAMPLE.name} is missing"
    return {"SIGNET_ENV_FILE": str(PRODUCTION_EXAMPLE), **throwaway_secrets(), **extra}
