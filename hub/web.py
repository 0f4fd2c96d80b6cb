"""Request plumbing shared by every blueprint: the hub's state on the app and the request's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.config import Settings

# The largest values the database's integer columns hold: a request naming a larger seq, size or version is
# refused as input (4xx) before it reaches a query, where it would overflow (SQLite) or be cast (PostgreSQL).
MAX_BIGINT = 2**63 - 1  # seqs, sizes, indexes (BIGINT)
MAX_INTEGER = 2**31 - 1  # key set versions (INTEGER)


@dataclass
class HubState:
    """What create_app wires once and every request reads: settings, the engine, the session factory."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    services: dict[str, Any]


def state(app: Flask | None = None) -> HubState:
    return (app or current_app).extensions["hashfed"]


def settings() -> Settings:
    return state().settings


def db() -> Session:
    """The request's unit of work: committed after a successful response, rolled back otherwise."""
    if "hashfed_db" not in g:
        g.hashfed_db = state().session_factory()
    return g.hashfed_db


def commit_despite_error() -> None:
    """Commit this request's unit of work even though it answers with an error (audit of failed logins)."""
    g.hashfed_commit_on_error = True


def finish_session(status_code: int) -> None:
    session: Session | None = g.pop("hashfed_db", None)
    commit_anyway = g.pop("hashfed_commit_on_error", False)
    if session is None:
        return
    try:
        if status_code < 400 or commit_anyway:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


def discard_session() -> None:
    session: Session | None = g.pop("hashfed_db", None)
    if session is not None:
        try:
            session.rollback()
        finally:
            session.close()
