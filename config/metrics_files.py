"""Housekeeping of ``PROMETHEUS_MULTIPROC_DIR``, where the processes that share it keep
their counters (one file per process and metric type, ``counter_<pid>.db``).

prometheus_client adds up every file, ended processes' included; a directory kept across
restarts would add yesterday's counts to today's. A starting process group removes the
files of processes that no longer run and keeps those of its live neighbours (a web
restart must not wipe the counts of the workers still running beside it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_FILE = re.compile(r"[a-z_]+_(\d+)\.db")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_dead_process_files() -> list[Path]:
    """Remove the files of processes that have ended; the removed files (none when the
    variable is unset). Creates the directory when it is missing."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return []
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    removed = []
    for path in root.glob("*.db"):
        found = _FILE.fullmatch(path.name)
        if found and not _running(int(found.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
