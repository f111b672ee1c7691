"""sd_notify without a dependency: tell systemd we are ready, alive, reloading or stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the Unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Outside systemd the
variable is unset and every call is a no-op, so the daemon calls these unconditionally.
"""

from __future__ import annotations

import os
import socket
import time


class SystemdNotifier:
    """Sends sd_notify messages; silently does nothing when not run by systemd."""

    def __init__(self, socket_path: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        watchdog_usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        #: Seconds between keep-alives systemd expects, or None when no watchdog is set.
        self.watchdog_interval = (
            int(watchdog_usec) / 1e6 if watchdog_usec.isdigit() and mine else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` as one datagram; ``False`` when nothing was sent or it failed."""
        if not self._address:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *self._status(status))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self, status: str | None = None) -> bool:
        # RELOADING=1 must carry the CLOCK_MONOTONIC time for Type=notify-reload semantics.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *self._status(status))

    @staticmethod
    def _status(status: str | None) -> tuple[str, ...]:
        return (f"STATUS={status}",) if status else ()
