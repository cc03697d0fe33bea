"""Where the independent verifiers (Debian trixie's skopeo and cosign) are.

``scripts/install-verifiers`` fetches them into ``.local/verifiers`` and writes
the wrappers returned here. Tests that need a verifier fail (never skip) with a
message naming that script when it has not been run.

``SIGNET_VERIFIERS_DIR`` overrides the folder, as it does for the script.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.registry_server import RegistryServer

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = "scripts/install-verifiers"


def verifiers_dir() -> Path:
    configured = os.environ.get("SIGNET_VERIFIERS_DIR")
    return Path(configured) if configured else REPO_ROOT / ".local" / "verifiers"


def _wrapper(name: str) -> str:
    path = verifiers_dir() / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"{name} not found at {path}: run `{INSTALL_SCRIPT}` (fetches Debian trixie's "
            "skopeo and cosign into .local/verifiers; no system-wide install)"
        )
    return str(path)


def skopeo_path() -> str:
    return _wrapper("skopeo")


def cosign_path() -> str:
    return _wrapper("cosign")


def offline_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a verifier that keeps it on loopback.

    Any request not to 127.0.0.1/localhost goes to a proxy on a closed loopback
    port and fails at once, so a verifier that tried to reach Rekor, a TUF
    mirror or Docker Hub fails instead of going to the internet. Configuration
    (registries.conf, auth file) and caches live under ``home``, not the
    user's or the machine's.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "run").mkdir(exist_ok=True)
    registries_conf = home / "registries.conf"
    registries_conf.write_text("# no mirrors, no search registries, no short-name aliases\n")
    dead_proxy = "http://127.0.0.1:9"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "TMPDIR": str(home),
        "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy,
        "http_proxy": dead_proxy,
        "https_proxy": dead_proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "TUF_ROOT": str(home / "sigstore"),
        "SIGSTORE_NO_CACHE": "true",
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
    }
    env.update(extra or {})
    return env


def run_verifier(
    args: Sequence[str], *, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a verifier command; never raises on a non-zero exit (callers assert on it)."""
    return subprocess.run(
        list(args),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Verifiers:
    """skopeo (containers/image ``sigstoreSigned`` policy) and cosign, loopback only."""

    def __init__(self, tmp_path: Path, server: RegistryServer) -> None:
        self.tmp_path = tmp_path
        self.host = server.host
        self.env = offline_env(tmp_path / "home")
        self.registries_d = tmp_path / "registries.d"
        self.registries_d.mkdir()
        (self.registries_d / "signet.yaml").write_text(
            f"docker:\n  {self.host}:\n    use-sigstore-attachments: true\n"
        )
        self.runs = 0

    def copy_dir(self, run: int) -> Path:
        return self.tmp_path / f"copy-{run}"

    def skopeo(self, image: str, key: Path, *, identity: str | None = None):
        """``skopeo copy`` under a sigstoreSigned policy for the image's namespace.

        ``identity`` given: ``exactRepository`` with it; None: ``matchRepository``.
        """
        self.runs += 1
        policy = self.tmp_path / f"policy-{self.runs}.json"
        signed_identity: dict[str, str] = (
            {"type": "exactRepository", "dockerRepository": identity}
            if identity
            else {"type": "matchRepository"}
        )
        requirement = {
            "type": "sigstoreSigned",
            "keyPath": str(key),
            "signedIdentity": signed_identity,
        }
        namespace = f"{self.host}/{image.split('/')[0]}"
        policy.write_text(
            json.dumps(
                {
                    "default": [{"type": "reject"}],
                    "transports": {"docker": {namespace: [requirement]}},
                }
            )
        )
        return run_verifier(
            [
                skopeo_path(),
                "--policy",
                str(policy),
                "--registries.d",
                str(self.registries_d),
                "copy",
                "--src-tls-verify=false",
                f"docker://{self.host}/{image}",
                f"dir:{self.copy_dir(self.runs)}",
            ],
            env=self.env,
        )

    def cosign(self, image: str, key: Path):
        return run_verifier(
            [
                cosign_path(),
                "verify",
                "--key",
                str(key),
                "--insecure-ignore-tlog",
                "--allow-http-registry",
                "--output",
                "json",
                f"{self.host}/{image}",
            ],
            env=self.env,
        )
