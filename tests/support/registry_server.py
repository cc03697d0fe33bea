"""Run a real Docker Distribution registry (``docker-registry serve``) on a loopback port.

Used by the test fixtures in ``tests/support/registry_fixtures.py``; usable on its own::

    with RegistryServer(workdir=tmp_path) as server:
        requests.get(f"{server.url}/v2/")

The registry gets its own config file, filesystem storage and log file inside
``workdir`` (a fresh temporary directory when not given, removed on ``stop()``).
The config is written as JSON, which is valid YAML for the registry's parser.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

DEFAULT_BINARY = "/usr/bin/docker-registry"
BINARY_ENV = "SIGNET_DOCKER_REGISTRY"


class RegistryServerError(RuntimeError):
    """The registry could not be started (the message carries the tail of its log)."""


def registry_binary() -> str:
    """Path of the docker-registry binary; ``$SIGNET_DOCKER_REGISTRY`` overrides the default."""
    path = os.environ.get(BINARY_ENV) or DEFAULT_BINARY
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RegistryServerError(
            f"docker-registry binary not found or not executable at {path}. Install the Debian "
            f"package 'docker-registry' (Docker Distribution 2.8) or point ${BINARY_ENV} at it."
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _terminate_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM if the test process dies first."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class RegistryServer:
    """A docker-registry process serving plain HTTP on ``127.0.0.1:<free port>``.

    Parameters:
        workdir: directory for config, storage and log (a temp dir, removed on stop, if None).
        notify_url: when set, a notification endpoint named ``signet`` posting to this URL
            (timeout 2s, threshold 5, backoff 1s, ignoring pulls and blob events).
        notify_token: bearer token sent by the registry as ``Authorization`` to ``notify_url``.
        auth: the registry's ``auth:`` section as a mapping, for example
            ``{"htpasswd": {"realm": "r", "path": "/x/htpasswd"}}`` or
            ``{"token": {"realm": ..., "service": ..., "issuer": ..., "rootcertbundle": ...}}``.
        extra_config: mapping deep-merged into the generated config last.
        start_timeout: seconds to wait for ``GET /v2/`` to answer.

    On Linux the registry gets SIGTERM when the thread that started it dies, so a killed
    test run leaves no registry behind: start it from the main (test) thread.
    """

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str] | None = None,
        notify_url: str | None = None,
        notify_token: str | None = None,
        auth: Mapping[str, Any] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.binary = registry_binary()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="registry-"))
        self.notify_url = notify_url
        self.notify_token = notify_token
        self.auth = dict(auth) if auth else None
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "registry.log"
        self.storage_path = self.workdir / "storage"

    # -- addresses -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` (what goes in an image reference)."""
        if self.port is None:
            raise RegistryServerError("the registry is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the base URL for a RegistryClient)."""
        return f"http://{self.host}"

    # -- config ----------------------------------------------------------------------------

    def config(self, port: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_path)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"127.0.0.1:{port}",
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.notify_url:
            endpoint: dict[str, Any] = {
                "name": "signet",
                "url": self.notify_url,
                "timeout": "2s",
                "threshold": 5,
                "backoff": "1s",
                "ignore": {"actions": ["pull"], "mediatypes": ["application/octet-stream"]},
            }
            if self.notify_token:
                endpoint["headers"] = {"Authorization": [f"Bearer {self.notify_token}"]}
            config["notifications"] = {
                "events": {"includereferences": True},
                "endpoints": [endpoint],
            }
        if self.auth:
            config["auth"] = copy.deepcopy(self.auth)
        if self.extra_config:
            _deep_merge(config, self.extra_config)
        return config

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RegistryServer:
        if self.process is not None:
            raise RegistryServerError("the registry is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_path.mkdir(exist_ok=True)
        started = time.monotonic()
        # A free port can be taken between probing and binding: try a few.
        for _attempt in range(3):
            port = free_port()
            self.config_path.write_text(json.dumps(self.config(port), indent=2))
            if self._launch(port):
                self.startup_seconds = time.monotonic() - started
                return self
        raise RegistryServerError(
            f"docker-registry could not bind a loopback port; log tail:\n{self.log_tail()}"
        )

    def _launch(self, port: int) -> bool:
        """Start the process and wait until it answers; False if the port was taken."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_terminate_with_parent if sys.platform == "linux" else None,
            )
        self.port = port
        deadline = time.monotonic() + self.start_timeout
        probe = requests.Session()
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = self.log_tail()
                    self.process = None
                    self.port = None
                    if "address already in use" in tail:
                        return False
                    raise RegistryServerError(
                        f"docker-registry exited while starting; log tail:\n{tail}"
                    )
                try:
                    # Any HTTP answer (200, or 401 with auth configured) means it serves.
                    probe.get(f"http://127.0.0.1:{port}/v2/", timeout=0.5)
                    return True
                except requests.RequestException:
                    time.sleep(0.01)
        finally:
            probe.close()
        self.stop()
        raise RegistryServerError(
            f"docker-registry did not answer GET /v2/ within {self.start_timeout:.0f}s; "
            f"log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """Terminate the registry (kill it if it does not exit) and drop an own temp dir."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.port = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port else "stopped"
        return f"<RegistryServer {where}>"
