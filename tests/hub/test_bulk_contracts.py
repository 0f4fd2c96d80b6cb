"""The bulk write routes' request contracts: the OpenAPI document shows each item's real shape, and every
constraint it documents is one the hub enforces (an item breaking it is a 422 naming its index)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hub.feed.models import FEED_TYPES
from hub.feed.signals import MAX_SIGNALS_PER_REQUEST
from hub.matching.service import MAX_QUERIES
from hub.reports.models import OUTCOMES, SURFACES
from hub.reports.service import MAX_REPORTS_PER_REQUEST
from tests.hub import factories as f
from tests.hub import feedkit as kit
from tests.hub import reportkit as rk

SIGNALS = "/v1/collections/{c}/signals"
# (method, path, the body's list field, its documented maximum)
BULK = [
    ("post", SIGNALS, "signals", MAX_SIGNALS_PER_REQUEST),
    ("post", "/v1/reports", "reports", MAX_REPORTS_PER_REQUEST),
    ("post", "/v1/match", "queries", MAX_QUERIES),
]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _body_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    body = doc["paths"][path][method]["requestBody"]
    return _resolve(doc, body["content"]["application/json"]["schema"])


def _typed(doc: dict[str, Any], schema: dict[str, Any], where: str) -> Iterator[str]:
    """Where a schema (recursively) is an untyped value: `items: {}`, or a property without a type."""
    schema = _resolve(doc, schema)
    if not schema.get("type") and "properties" not in schema:
        yield where
    for name, prop in schema.get("properties", {}).items():
        yield from _typed(doc, prop, f"{where}.{name}")
    if "items" in schema:
        yield from _typed(doc, schema["items"], f"{where}[]")


@pytest.fixture
def doc(client) -> dict[str, Any]:
    return client.get("/openapi.json").get_json()


@pytest.mark.parametrize(("method", "path", "field", "limit"), BULK, ids=[b[1] for b in BULK])
def test_bulk_bodies_document_each_item(doc, method, path, field, limit):
    envelope = _body_schema(doc, method, path)
    assert envelope["required"] == [field]
    items = envelope["properties"][field]
    assert items["type"] == "array" and (items["minItems"], items["maxItems"]) == (1, limit)
    item = _resolve(doc, items["items"])
    assert item["properties"] and item["additionalProperties"] is False
    assert list(_typed(doc, envelope, field)) == []


def test_the_report_contract_is_declared_once(doc):
    item = _resolve(doc, _body_schema(doc, "post", "/v1/reports")["properties"]["reports"]["items"])
    patch = _body_schema(doc, "patch", "/v1/reports/{report_id}")
    got = _resolve(doc, doc["paths"]["/v1/reports/{report_id}"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"])
    assert item["properties"]["outcome"]["enum"] == list(OUTCOMES) == patch["properties"]["outcome"]["enum"]
    assert item["properties"]["surface"]["enum"] == list(SURFACES)
    assert set(patch["properties"]) == {"outcome", "actioned_at", "automated_decision"}
    assert set(patch["properties"]) | {"id", "collection", "seq", "distance", "surface", "matched_at"} <= set(
        got["properties"]
    )
    signal = _resolve(doc, item["properties"]["signal"])
    assert signal["properties"]["type"]["enum"] == list(FEED_TYPES)


def _violations(doc: dict[str, Any], schema: dict[str, Any], good: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each documented constraint of an item's fields, broken once: (what, the bad item)."""

    def with_(name: str, value: Any) -> dict[str, Any]:
        return {**good, name: value}

    yield "an unknown field", with_("image", "...")
    for name in schema.get("required", []):
        yield f"{name} missing", {k: v for k, v in good.items() if k != name}
    for name, prop in schema["properties"].items():
        prop = _resolve(doc, prop)
        kind = prop.get("type")
        kind = kind[0] if isinstance(kind, list) else kind
        if "enum" in prop:
            yield f"{name} not in its enum", with_(name, "not-one-of-them")
        if kind == "integer":
            yield f"{name} a string", with_(name, "1")
            yield f"{name} a float", with_(name, 1.5)
            if "minimum" in prop:
                yield f"{name} below minimum", with_(name, prop["minimum"] - 1)
            if "maximum" in prop:
                yield f"{name} above maximum", with_(name, prop["maximum"] + 1)
        if kind == "boolean":
            yield f"{name} not a boolean", with_(name, "yes")
        if kind == "string":
            yield f"{name} a number", with_(name, 7)
            if prop.get("minLength"):
                yield f"{name} too short", with_(name, "a" * (prop["minLength"] - 1))
            if "maxLength" in prop:
                yield f"{name} too long", with_(name, "a" * (prop["maxLength"] + 1))
            if "pattern" in prop:
                yield f"{name} off its pattern", with_(name, "/" * len(good.get(name) or "x"))
        if kind == "array":
            yield f"{name} not a list", with_(name, "a")
            if "maxItems" in prop:
                yield f"{name} too many", with_(name, ["a"] * (prop["maxItems"] + 1))
            inner = _resolve(doc, prop["items"])
            if "pattern" in inner:
                yield f"{name} item off its pattern", with_(name, ["-x"])
            if "maxLength" in inner:
                yield f"{name} item too long", with_(name, ["a" * (inner["maxLength"] + 1)])
        if kind == "object" and isinstance(good.get(name), dict):
            for what, bad in _violations(doc, prop, good[name]):
                yield f"{name}: {what}", with_(name, bad)


def _each_refused(client, doc, method, path, field, url, headers, good) -> list[str]:
    item = _resolve(doc, _body_schema(doc, method, path)["properties"][field]["items"])
    cases = list(_violations(doc, item, good))
    assert len(cases) > 10
    accepted = []
    for what, bad in cases:
        r = getattr(client, method)(url, json={field: [good, bad]}, headers=headers)
        if r.status_code != 422 or list(r.get_json()["errors"][field]) != ["1"]:
            accepted.append(f"{what}: {r.status_code} {r.get_json()}")
    return accepted


def test_each_documented_signal_constraint_is_enforced(client, session, settings, doc):
    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session, "owner")
    c = kit.collection(session, keys, owner)
    headers = f.auth(f.token(session, owner, ["hashes:write"]))
    good = {"type": "pdq", "value": kit.pdq(), "quality": 90, "tags": ["ncii"], "case_ref": "case-1"}
    url = SIGNALS.format(c=c.id)
    assert _each_refused(client, doc, "post", SIGNALS, "signals", url, headers, good) == []


def test_each_documented_query_constraint_is_enforced(client, session, doc):
    headers = f.auth(f.token(session, f.partner(session, name="matcher"), ["match"]))
    good = {"type": "pdq", "value": kit.pdq(), "threshold": 20}
    assert _each_refused(client, doc, "post", "/v1/match", "queries", "/v1/match", headers, good) == []


def test_each_documented_report_constraint_is_enforced(client, session, settings, doc):
    w = rk.build(session, settings)
    good = rk.item(w, "r-good", outcome="removed", actioned_at=rk.t(w.matched))
    headers = f.auth(w.token_a)
    assert _each_refused(client, doc, "post", "/v1/reports", "reports", "/v1/reports", headers, good) == []
