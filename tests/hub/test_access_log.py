"""gunicorn's access log never holds a case reference (a survivor's key to their case)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

from tests.ports import free_port

SERVER = textwrap.dedent(
    """
    import sys
    from gunicorn.app.base import BaseApplication
    from hub.ops.serving import RedactingLogger

    def app(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no"]

    class Probe(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", "127.0.0.1:" + sys.argv[1])
            self.cfg.set("workers", 1)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", RedactingLogger)

        def load(self):
            return app

    Probe().run()
    """
)


def _get(url: str) -> None:
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        pass


def test_case_reference_is_cut_from_gunicorn_access_lines():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        _get(f"http://127.0.0.1:{port}/v1/cases/CASE-7Q4K-SECRET")
        _get(f"http://127.0.0.1:{port}/v1/cases/CASE-9ZZZ-SECRET/withdraw?x=1")
        _get(f"http://127.0.0.1:{port}/v1/feed/collections")
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert "SECRET" not in out
    assert '"GET /v1/cases/- HTTP/1.1" 404' in out
    assert '"GET /v1/cases/-/withdraw?x=1 HTTP/1.1" 404' in out
    assert '"GET /v1/feed/collections HTTP/1.1" 404' in out  # other paths are logged as they were
