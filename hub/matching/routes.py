"""The hosted matcher's route: `POST /v1/match` (hashes in, matching signals out; never media)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from hub import rls
from hub.feed.models import FEED_TYPES
from hub.feed.signals import HEX_LENGTHS
from hub.identity.auth import current_principal, require_scope
from hub.matching.service import MAX_QUERIES, MAX_THRESHOLD, MatchIndex, parse_queries, readable_ids
from hub.web import Blueprint, ItemList, db, state
from partners.matching.vpdq import MAX_VPDQ_CHARS

blp = Blueprint("match", __name__, description="The hub-hosted reference matcher (hashes only, never media)")

# Where each app keeps its process's index (HubState.services).
_SERVICE = "match_index"


def match_index() -> MatchIndex:
    """This process's index (one per app, made at the first match request)."""
    services = state().services
    index: MatchIndex | None = services.get(_SERVICE)
    if index is None:
        index = services.setdefault(_SERVICE, MatchIndex())
    return index


class QuerySchema(Schema):
    """One query hash; `parse_queries` enforces these fields and limits, naming each bad item by its index."""

    type = fields.String(required=True, validate=validate.OneOf(list(FEED_TYPES)))
    value = fields.String(
        required=True,
        validate=validate.Length(min(HEX_LENGTHS.values()), MAX_VPDQ_CHARS),
        metadata={
            "description": "hex: " + ", ".join(f"{kind} {n} digits" for kind, n in HEX_LENGTHS.items())
            + "; vpdq: the video's frames as a JSON array (docs/formats.md)"
        },
    )
    threshold = fields.Integer(
        allow_none=True,
        strict=True,
        validate=validate.Range(0, MAX_THRESHOLD),
        metadata={"description": "pdq: at most this distance, and never above the collection's threshold"},
    )


class MatchRequestSchema(Schema):
    queries = ItemList(QuerySchema, max_items=MAX_QUERIES)


class MatchSchema(Schema):
    collection = fields.String()
    signal = fields.String()
    distance = fields.Integer()
    seq = fields.Integer(metadata={"description": "the collection's batch seq that added the signal"})


class ResultSchema(Schema):
    index = fields.Integer(metadata={"description": "position of the query in the request"})
    matches = fields.List(fields.Nested(MatchSchema))


class MatchResponseSchema(Schema):
    results = fields.List(fields.Nested(ResultSchema))


@blp.route("/v1/match", methods=["POST"])
@require_scope("match")
@blp.arguments(MatchRequestSchema)
@blp.response(200, MatchResponseSchema)
@blp.alt_response(413, description="more than 1,000 hashes")
@blp.alt_response(422, description="bad items, each named by index (type, hex value, threshold)")
def match(args: dict[str, Any]) -> dict[str, Any]:
    """Match up to 1,000 hashes (never media) against the collections this partner may read.

    PDQ matches count within min(the query's threshold, the collection's signed threshold); MD5 and
    SHA-256 match exactly (distance 0). A vpdq video matches by vPDQ's rule with the collection's signed P;
    its distance is 100 minus the smaller share (%) of frames matched. Nothing is written, not even an
    audit entry (see docs/api.md).
    """
    queries = parse_queries(args["queries"])
    session = db()
    partner_id = current_principal().partner_id
    collections = readable_ids(session, partner_id)
    index = match_index()
    # The process's index holds every collection (answers are filtered to `collections` below), so it is
    # built and caught up as the hub itself, not as the caller, whom row-level security would limit.
    rls.set_tenant(session, rls.SYSTEM)
    try:
        index.update(session)
    finally:
        rls.set_tenant(session, partner_id)
    results = index.match(queries, collections)
    return {"results": [{"index": i, "matches": m} for i, m in enumerate(results)]}
