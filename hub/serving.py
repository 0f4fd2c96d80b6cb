"""Production WSGI servers: waitress for the embedded default, gunicorn with PostgreSQL."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from hub.app import create_app
from hub.config import Settings


def host_port(base_url: str) -> tuple[str, int]:
    url = urlsplit(base_url)
    return url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)


def is_local(base_url: str) -> bool:
    """Whether the base URL names this machine's loopback (the embedded default), where its port must be free."""
    host, _ = host_port(base_url)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_in_use(host: str, port: int) -> bool:
    """True when nothing can listen on host:port now (another program holds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers do: a port left in TIME_WAIT by a stopped hub is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def serve_embedded(settings: Settings, host: str, port: int, threads: int, *, ready: Callable[[], None]) -> None:
    """One process: the API on waitress's threads and the scheduled jobs beside it."""
    import waitress

    from hub.scheduler import start_embedded

    app = create_app(settings)
    # Bind before any job runs: a taken port fails here, with nothing started.
    server = waitress.create_server(app, host=host, port=port, threads=threads, ident="hashfed")
    # The one embedded process also runs the scheduled jobs (sealing, cosignatures, audit checkpoints...);
    # their first run happens before `ready`, so its banner is the last start-up line.
    start_embedded(app, settings)
    ready()
    server.run()


def serve_gunicorn(
    settings: Settings, host: str, port: int, workers: int, threads: int, *, ready: Callable[[], None]
) -> None:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", "-")
            self.cfg.set("when_ready", lambda _server: ready())

        def load(self) -> Any:
            return create_app(settings)

    _App().run()
