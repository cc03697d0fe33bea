"""Settings as a new process computes them: the test process imported its settings once,
so an environment variable's effect is read from a fresh Python process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def print_setting(expression: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``print(<expression>)`` after importing the test settings with ``env`` added to
    this process's environment; the finished process (stdout, stderr, return code)."""
    code = f"from django.conf import settings; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
