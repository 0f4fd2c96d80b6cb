"""Production WSGI servers: waitress for the embedded default, gunicorn with PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from hub.app import create_app
from hub.config import Settings


def serve_embedded(settings: Settings, host: str, port: int, threads: int) -> None:
    """One process: SQLite allows one writer, so one process with threads is the right shape."""
    import waitress

    app = create_app(settings)
    for hook in EMBEDDED_HOOKS:
        hook(app, settings)
    waitress.serve(app, host=host, port=port, threads=threads, ident="hashfed")


# Things the single embedded process also runs (the scheduler, once it exists): f(app, settings).
EMBEDDED_HOOKS: list[Callable[[Flask, Settings], None]] = []


def _start_scheduler(app: Any, settings: Settings) -> None:
    from hub.scheduler import start_embedded

    start_embedded(app, settings)


EMBEDDED_HOOKS.append(_start_scheduler)


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
