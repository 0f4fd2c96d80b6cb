"""Production WSGI servers: waitress for the embedded default, gunicorn with PostgreSQL."""

from __future__ import annotations

from typing import Any

from hub.app import create_app
from hub.config import Settings


def serve_embedded(settings: Settings, host: str, port: int, threads: int) -> None:
    """One process: SQLite allows one writer, so one process with threads is the right shape."""
    import waitress

    from hub.scheduler import start_embedded

    app = create_app(settings)
    # The one embedded process also runs the scheduled jobs (sealing, cosignatures, audit checkpoints...).
    start_embedded(app, settings)
    waitress.serve(app, host=host, port=port, threads=threads, ident="hashfed")


def serve_gunicorn(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", "-")

        def load(self) -> Any:
            return create_app(settings)

    _App().run()
