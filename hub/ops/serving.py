"""Production WSGI servers: waitress for the embedded default, gunicorn with PostgreSQL."""

from __future__ import annotations

import errno
import ipaddress
import re
import signal
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gunicorn.glogging import Logger

from hub.config import Settings
from hub.ops.scheduler import start_embedded
from hub.web import MAX_BODY_BYTES

# Makes the WSGI app (hub.app.create_app): passed in by the command that serves, so that operations' modules
# never import the app that wires their own routes.
AppFactory = Callable[[Settings], Any]


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


# An idle or half-open connection is closed after this long (waitress's channel_timeout; gunicorn's keep-alive
# below). Production puts a buffering reverse proxy in front (docs/operations.md): slow clients meet the proxy.
IDLE_TIMEOUT_S = 30
# A gunicorn worker silent this long is restarted; a graceful stop waits this long for requests in flight.
WORKER_TIMEOUT_S = 60


def make_embedded_server(app: Any, host: str, port: int, threads: int) -> Any:
    """waitress, bound: a declared body over MAX_BODY_BYTES is refused (413) before it is read; forwarded
    headers are passed through untouched for hub.proxies to believe or drop (waitress would drop them all)."""
    import waitress

    return waitress.create_server(
        app, host=host, port=port, threads=threads, ident="hashfed",
        max_request_body_size=MAX_BODY_BYTES, channel_timeout=IDLE_TIMEOUT_S,
        clear_untrusted_proxy_headers=False, trusted_proxy=None,
    )


def serve_embedded(
    create_app: AppFactory, settings: Settings, host: str, port: int, threads: int, *, ready: Callable[[], None]
) -> None:
    """One process: the API on waitress's threads and the scheduled jobs beside it."""
    app = create_app(settings)
    # Bind before any job runs: a taken port fails here, with nothing started.
    server = make_embedded_server(app, host, port, threads)
    # The one embedded process also runs the scheduled jobs (sealing, cosignatures, audit checkpoints...);
    # their first run happens before `ready`, so its banner is the last start-up line.
    start_embedded(app, settings)
    # SIGTERM ends the process the way Ctrl-C does, so the embedded PostgreSQL is stopped on the way out.
    signal.signal(signal.SIGTERM, _exit)
    ready()
    try:
        server.run()
    finally:
        server.close()


def _exit(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def serve_gunicorn(
    create_app: AppFactory,
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    threads: int,
    *,
    ready: Callable[[], None],
) -> None:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", RedactingLogger)
            self.cfg.set("timeout", WORKER_TIMEOUT_S)
            self.cfg.set("graceful_timeout", WORKER_TIMEOUT_S)
            self.cfg.set("keepalive", 5)
            # The scheme comes from hub.proxies, which believes only the configured proxies.
            self.cfg.set("secure_scheme_headers", {})
            self.cfg.set("when_ready", lambda _server: ready())

        def load(self) -> Any:
            return create_app(settings)

    _App().run()


# A case reference is what a survivor's intake holds to check and withdraw a case; the hub keeps only a keyed
# digest of it, and no log may keep it either (docs/security.md). It travels in the path of /v1/cases/{ref}.
_CASE_PATH = re.compile(r"(/v1/cases/)[^/?#\s]+")


def redact_path(text: str) -> str:
    """A request line or path with any case reference replaced by `-`."""
    return _CASE_PATH.sub(r"\1-", text)


class RedactingLogger(Logger):
    """gunicorn's logger whose access lines carry no case reference (waitress, the embedded server, writes no
    access log)."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_path(atoms[key])
        return atoms
