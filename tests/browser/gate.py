"""A loopback TCP proxy whose traffic can be held: signing work stays in progress, for as
long as a test needs to look at it, then finishes when released (no sleep, no mock)."""

from __future__ import annotations

import socket
import threading
import time

from tests.support.tcp_proxy import TcpProxy, _close

# A held exchange is released by then anyway, well inside the registry client's 30 s read
# timeout: a test that forgot to release cannot hang the workers.
MAX_HOLD_SECONDS = 25.0


class GatedProxy(TcpProxy):
    """``TcpProxy`` whose bytes wait, in both directions, while ``hold()`` is in force."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self._gate = threading.Event()
        self._gate.set()
        self._last_traffic = time.monotonic()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._last_traffic = time.monotonic()  # what was held moves from now on
        self._gate.set()

    def wait_quiet(self, quiet: float = 1.5, timeout: float = 30.0) -> bool:
        """Until nothing has passed for ``quiet`` seconds (the work it carried is over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._gate.is_set() and time.monotonic() - self._last_traffic >= quiet:
                return True
            time.sleep(0.05)
        return False

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._gate.wait(timeout=MAX_HOLD_SECONDS)
                sink.sendall(data)
                self._last_traffic = time.monotonic()
        except OSError:
            pass
        with self._lock:
            self._open -= {source, sink}
        _close(source, sink)
