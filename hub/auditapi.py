"""Public, read-only trust endpoints: the signed key sets and the audit log's latest checkpoint.

The audit entries and proofs need the `audit:read` scope; they are served when `hub.auth.require_scope`
exists (see `register_scoped_routes`), and are always available through `hashfed audit ...`.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_smorest import Blueprint

from hub import auditlog, keys
from hub.errors import BadRequestError, NotFoundError
from hub.web import db

blp = Blueprint("trust", __name__, description="Signed key sets and the audit log")

_ENVELOPE = "application/json"


def _envelope(row: keys.KeySetRecord, cache: str) -> Response:
    response = Response(bytes(row.envelope), mimetype=_ENVELOPE)
    response.headers["Cache-Control"] = cache
    response.headers["ETag"] = f'"{row.payload_sha256}"'
    return response


@blp.route("/v1/keys")
@blp.response(200, description="the latest key set: a DSSE envelope of application/vnd.hashfed.keys.v1+json")
@blp.alt_response(404, description="no key set published yet")
def latest_keys() -> Response:
    """The latest signed key set (public)."""
    row = keys.latest_record(db())
    if row is None:
        raise NotFoundError("no key set is published yet")
    return _envelope(row, "public, max-age=60")


@blp.route("/v1/keys/<int:version>")
@blp.response(200, description="key set `version` (a DSSE envelope); immutable")
@blp.alt_response(404, description="no such version")
def keys_version(version: int) -> Response:
    """Any earlier key set version, so a client can walk forward from the one it pinned (public)."""
    return _envelope(keys.keyset_record(db(), version), "public, max-age=31536000, immutable")


@blp.route("/v1/audit/checkpoint")
@blp.response(200, description="the latest audit checkpoint, a C2SP signed note (text/plain)")
@blp.alt_response(404, description="no checkpoint signed yet")
def audit_checkpoint() -> Response:
    """The audit log's latest signed checkpoint (public: anyone can compare views)."""
    latest = auditlog.latest_checkpoint(db())
    if latest is None:
        raise NotFoundError("no audit checkpoint has been signed yet")
    response = Response(latest.note, mimetype="text/plain")
    response.headers["Cache-Control"] = "public, max-age=10"
    return response


def _int_arg(name: str, *, required: bool = True) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise BadRequestError(f"query parameter {name!r} is required")
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise BadRequestError(f"query parameter {name!r} must be a non-negative integer")
    return int(raw)


def entries_body() -> dict[str, Any]:
    """GET /v1/audit/entries?start=&end=&limit=: entries as base64 canonical bytes."""
    start = _int_arg("start") or 0
    end = _int_arg("end", required=False)
    limit = _int_arg("limit", required=False) or auditlog.MAX_PAGE
    page = auditlog.entries(db(), start, end, limit=limit)
    return {
        "entries": [{"seq": seq, "entry": _b64(e)} for seq, e in page.entries],
        "next": page.next_start,
    }


def inclusion_body() -> dict[str, Any]:
    proof = auditlog.inclusion_proof(db(), _int_arg("seq") or 0, _int_arg("size") or 0)
    return {
        "seq": proof.seq,
        "size": proof.size,
        "leaf_hash": _b64(proof.leaf_hash),
        "root": _b64(proof.root),
        "proof": [_b64(h) for h in proof.proof],
    }


def consistency_body() -> dict[str, Any]:
    proof = auditlog.consistency_proof(db(), _int_arg("from") or 0, _int_arg("to") or 0)
    return {
        "from": proof.size1,
        "to": proof.size2,
        "root1": _b64(proof.root1),
        "root2": _b64(proof.root2),
        "proof": [_b64(h) for h in proof.proof],
    }


def _b64(value: bytes) -> str:
    from audit.merkle import b64encode

    return b64encode(value)
