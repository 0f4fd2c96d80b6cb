"""A free TCP port on loopback, and a WSGI app served on one, for tests that serve a real hub (or a fake of
another service) or hold a port taken."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, port: int = 0, *, threaded: bool = True) -> Iterator[str]:
    """`app` on a real HTTP server (werkzeug, in a thread) at 127.0.0.1:`port` (0: any free port); yields its
    base URL and stops the server on the way out. `threaded=False` answers one request at a time (a test whose
    requests share one database transaction)."""
    server = make_server("127.0.0.1", port, app, threaded=threaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
