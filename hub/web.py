"""Request plumbing shared by every blueprint: the hub's state on the app and the request's session."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import flask_smorest
from flask import Flask, Request, current_app, g, request
from marshmallow import Schema, fields
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request

from hub.config import Settings
from hub.errors import BadRequestError, PayloadTooLargeError, ValidationError

# The largest values the database's integer columns hold: a request naming a larger seq, size or version is
# refused as input (4xx) before it reaches a query, where PostgreSQL would refuse it with an error.
# The largest request body the hub reads (a bulk submission of 50,000 signals is about 6 MiB); the servers
# refuse a larger declared Content-Length before reading it.
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_BIGINT = 2**63 - 1  # seqs, sizes, indexes (BIGINT)
MAX_INTEGER = 2**31 - 1  # key set versions (INTEGER)
# The deepest JSON body read: a report's signal reference, the deepest the API takes, is 4 levels down. Deeper
# bodies are refused before any view, so nothing after the parser can recurse into them.
MAX_JSON_DEPTH = 32
TEXT_PROBLEM = "text without NUL or unpaired surrogates"
# Characters no database column takes: NUL (PostgreSQL text) and surrogates, which json.loads leaves unpaired only.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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


# --- request bodies: parsed once, strictly, before any view ----------------------------------------------------


class _ConstantError(ValueError):
    """NaN or Infinity: Python's json module reads them, RFC 8259 has no such values."""


def _no_constant(name: str) -> Any:
    raise _ConstantError(name)


def _too_deep(value: Any) -> bool:
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return True
        deeper: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        level = deeper
    return False


def _unstorable_text(value: Any, path: str, found: dict[str, list[str]]) -> None:
    """Name (by dotted path) each string or key holding NUL or an unpaired surrogate."""
    if type(value) is str:
        if _UNSTORABLE.search(value):
            found[path or "(body)"] = [TEXT_PROBLEM]
    elif type(value) is dict:
        for key, child in value.items():
            if _UNSTORABLE.search(key):
                found[path or "(body)"] = [f"keys are {TEXT_PROBLEM}"]
                continue
            _unstorable_text(child, f"{path}.{key}" if path else key, found)
    elif type(value) is list:
        for i, child in enumerate(value):
            _unstorable_text(child, f"{path}.{i}" if path else str(i), found)


def loads_request_json(data: bytes | str) -> Any:
    """A request body as JSON (RFC 8259), or a 4xx that no view ever sees the body of.

    400: not UTF-8, not JSON, NaN or Infinity, an integer past Python's 4,300-digit limit, or nested deeper than
    MAX_JSON_DEPTH (or the interpreter's recursion limit). 422: a string or key holding NUL or an unpaired
    surrogate (JSON escapes both; no database stores them), named by its dotted path.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as e:
        raise BadRequestError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from e
    except UnicodeDecodeError as e:
        raise BadRequestError("the body is not UTF-8") from e
    except _ConstantError as e:
        raise BadRequestError("the body holds NaN or Infinity, which JSON has not") from e
    except json.JSONDecodeError as e:
        raise BadRequestError("the body is not valid JSON") from e
    except ValueError as e:  # int() past sys.get_int_max_str_digits() inside the parser
        raise BadRequestError("the body holds a number with too many digits") from e
    # Cheap bounds first: fewer brackets than the limit cannot nest past it; no \u escape, no NUL or surrogate.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _too_deep(value):
        raise BadRequestError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u" in text:
        found: dict[str, list[str]] = {}
        _unstorable_text(value, "", found)
        if found:
            raise ValidationError("the body holds NUL or an unpaired surrogate", errors={"json": found})
    return value


class _StrictJSON:
    """What `Request.get_json` reads a body with (it calls `json_module.loads`)."""

    loads = staticmethod(loads_request_json)
    dumps = staticmethod(json.dumps)


class HubRequest(Request):
    """Flask's request, reading JSON bodies with `loads_request_json`: its 4xx is raised even for `silent=True`."""

    @property
    def json_module(self) -> Any:
        return _StrictJSON

    @json_module.setter
    def json_module(self, _provider: Any) -> None:
        """Flask's request context hands each request the app's JSON provider; request bodies keep the strict one."""


def refuse_hostile_input() -> None:
    """Before every view (and before authentication): NUL in the URL, and any JSON body that
    `loads_request_json` refuses, are a 4xx here, parsed once and cached for the view."""
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
        raise BadRequestError("a URL may not hold NUL")
    if request.is_json and request.get_data(cache=True):
        request.get_json()


class HubParser(FlaskParser):
    """webargs' parser, taking the body `refuse_hostile_input` already parsed instead of parsing it again."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req) or not req.get_data(cache=True):
            return webargs_core.missing
        return req.get_json()


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with `HubParser` for `@blp.arguments`."""

    ARGUMENTS_PARSER = HubParser()


# --- bulk bodies: documented item by item, checked by the service ------------------------------------------------


class ItemList(fields.List):
    """A request's list of 1 to `max_items` items: the OpenAPI document shows each item's schema (fields,
    types, enums, limits), while a load checks only the list and passes the items on as sent.

    The service's validator checks every item against the same constants and names each bad one by its
    index (`errors.<name>.<index>`); a marshmallow load of every item would cost many times that check on the
    bulk routes. A non-list or empty list is a 422 and too many items a 413, in the body the services send.
    """

    def __init__(self, item: type[Schema], *, max_items: int, **kwargs: Any) -> None:
        metadata = {"minItems": 1, "maxItems": max_items, **kwargs.pop("metadata", {})}
        super().__init__(fields.Nested(item), required=True, metadata=metadata, **kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        name = self.data_key or self.name
        if type(value) is not list or not value:
            raise ValidationError(f"{name} must be a non-empty list", errors={name: ["a non-empty list"]})
        if len(value) > self.max_items:
            raise PayloadTooLargeError(f"at most {self.max_items} {name} per request, got {len(value)}")
        return value


class StrictBoolean(fields.Boolean):
    """JSON true or false only (marshmallow's Boolean also takes "yes", 1 and "on")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if type(value) is not bool:
            raise self.make_error("invalid", input=value)
        return value
