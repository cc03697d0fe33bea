"""The dependencies Signet installs: past known advisories, locked, hashed, installed as locked."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {"run": ROOT / "requirements" / "run.txt", "dev": ROOT / "requirements" / "dev.txt"}

# The first release that fixes the advisories we know of (see the README's upgrade notes).
ADVISORY_FLOORS = {
    "django": "5.2.19",
    "djangorestframework": "3.15.2",
    "cryptography": "44",
    "requests": "2.32.4",
}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)==([^\s;\\]+)")


def pins(lock: Path) -> dict[NormalizedName, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) for every package the lock file names."""
    found: dict[NormalizedName, tuple[Version, int]] = {}
    name = None
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(Requirement(match.group(1)).name)
            found[name] = (Version(match.group(2)), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[name]
            found[name] = (version, hashes + 1)
    return found


def declared(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = project["dependencies"] + [
        line for extra in extras for line in project["optional-dependencies"][extra]
    ]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("package,floor", sorted(ADVISORY_FLOORS.items()))
def test_the_declared_lower_bound_is_past_the_known_advisories(package: str, floor: str) -> None:
    [requirement] = [r for r in declared() if canonicalize_name(r.name) == package]
    lower = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    assert lower and max(lower) >= Version(floor), (
        f"{requirement} still admits a release before {floor}"
    )


@pytest.mark.parametrize("lock,extras", [("run", ("postgres",)), ("dev", ("dev",))])
def test_every_declared_dependency_is_locked_with_hashes_within_its_range(lock, extras) -> None:
    locked = pins(LOCKS[lock])
    for requirement in declared(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in {LOCKS[lock].name}"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCKS[lock].name} pins {name}=={version}, outside {requirement}"
        )
    for name, (_version, hashes) in locked.items():
        assert hashes > 0, f"{LOCKS[lock].name} pins {name} without a hash"


def test_the_environment_runs_exactly_what_the_dev_lock_pins() -> None:
    """make test installs requirements/dev.txt; a drift means the lock is stale."""
    for name, (version, _hashes) in pins(LOCKS["dev"]).items():
        assert Version(metadata.version(name)) == version, name
