"""Public, read-only trust endpoints: the signed key sets and the audit log's latest checkpoint.

The audit entries and proofs need the `audit:read` scope; they are also available to the operator through
`hashfed audit ...`.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response
from flask_smorest import Blueprint

from audit.merkle import b64encode
from hub.errors import NotFoundError
from hub.identity.auth import require_scope
from hub.transparency import auditlog, keys
from hub.transparency.models import KeySetRecord
from hub.web import MAX_BIGINT, MAX_INTEGER, db

blp = Blueprint("trust", __name__, description="Signed key sets and the audit log")

_ENVELOPE = "application/json"


def _envelope(row: KeySetRecord, cache: str) -> Response:
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


@blp.route(f"/v1/keys/<int(max={MAX_INTEGER}):version>")
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


_SEQ = ma.validate.Range(min=0, max=MAX_BIGINT)
_SIZE = ma.validate.Range(min=1, max=MAX_BIGINT)


class EntriesQuery(ma.Schema):
    start = ma.fields.Integer(load_default=0, validate=_SEQ)
    end = ma.fields.Integer(load_default=None, validate=_SEQ)
    limit = ma.fields.Integer(load_default=auditlog.MAX_PAGE, validate=ma.validate.Range(min=1, max=auditlog.MAX_PAGE))


class InclusionQuery(ma.Schema):
    seq = ma.fields.Integer(required=True, validate=_SEQ)
    size = ma.fields.Integer(required=True, validate=_SIZE)


class ConsistencyQuery(ma.Schema):
    from_ = ma.fields.Integer(required=True, data_key="from", validate=_SIZE)
    to = ma.fields.Integer(required=True, validate=_SIZE)


@blp.route("/v1/audit/entries")
@require_scope("audit:read")
@blp.arguments(EntriesQuery, location="query")
@blp.response(200, description="entries [start, end) as base64 of their exact canonical bytes; `next` pages on")
def audit_entries(query: dict[str, Any]) -> dict[str, Any]:
    """Audit log entries by range, oldest first."""
    page = auditlog.entries(db(), query["start"], query["end"], limit=query["limit"])
    return {
        "entries": [{"seq": seq, "entry": _b64(e)} for seq, e in page.entries],
        "next": page.next_start,
    }


@blp.route("/v1/audit/proofs/inclusion")
@require_scope("audit:read")
@blp.arguments(InclusionQuery, location="query")
@blp.response(200, description="RFC 9162 inclusion proof of entry `seq` in the tree of `size` entries")
@blp.alt_response(404, description="`size` is beyond the latest checkpoint or `seq` is not below it")
def audit_inclusion(query: dict[str, Any]) -> dict[str, Any]:
    """Prove that entry `seq` is in the audit log at tree size `size`."""
    proof = auditlog.inclusion_proof(db(), query["seq"], query["size"])
    return {
        "seq": proof.seq,
        "size": proof.size,
        "leaf_hash": _b64(proof.leaf_hash),
        "root": _b64(proof.root),
        "proof": [_b64(h) for h in proof.proof],
    }


@blp.route("/v1/audit/proofs/consistency")
@require_scope("audit:read")
@blp.arguments(ConsistencyQuery, location="query")
@blp.response(200, description="RFC 9162 consistency proof between tree sizes `from` and `to`")
@blp.alt_response(404, description="a size is beyond the latest checkpoint")
def audit_consistency(query: dict[str, Any]) -> dict[str, Any]:
    """Prove that the audit log at size `from` is a prefix of the log at size `to`."""
    proof = auditlog.consistency_proof(db(), query["from_"], query["to"])
    return {
        "from": proof.size1,
        "to": proof.size2,
        "root1": _b64(proof.root1),
        "root2": _b64(proof.root2),
        "proof": [_b64(h) for h in proof.proof],
    }


def _b64(value: bytes) -> str:
    return b64encode(value)
