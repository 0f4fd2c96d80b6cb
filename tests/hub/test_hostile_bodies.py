"""Hostile input from authenticated partners and staff: every case is a 4xx in the hub's error shape that writes
nothing (deep JSON, huge integers, wrong JSON types, NUL and lone surrogates, times at the ends of the calendar)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.merkle import b64encode
from hub.feed.models import Collection, CollectionHead, IdempotencyKey, PendingChange, RetiredValue, Signal
from hub.identity import people
from hub.identity.models import KIND_SCOPES, AccessToken
from hub.reports import service
from hub.reports.models import Report, ReportOutcome
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from hub.webhooks.models import WebhookEndpoint
from tests.hub import factories as f
from tests.hub import feedkit as kit

PASSWORD = "correct horse battery"
DEEP = "[" * 3000 + "]" * 3000
HUGE_DIGITS = "9" * 5000  # past Python's 4,300-digit limit for int() inside json.loads
BIG = 10**20  # parses, but is past any 64-bit integer column
SURROGATE = "\\ud800"  # a lone surrogate, as JSON escapes it
NUL = "\\u0000"


@dataclass
class World:
    c: str  # a collection partner A owns (reads and contributes)
    pdq: list[str]  # ids of A's sealed pdq signals in c
    md5: str  # id of A's sealed md5 signal in c
    root: str  # base64 root of c at size 1
    a: dict[str, str]  # A's bearer header: every platform scope
    gov: dict[str, str]  # governance's bearer header: every governance scope
    report: str  # one of A's reports
    console: str  # a logged-in staff user's session cookie


@pytest.fixture
def world(session, settings) -> World:
    hk = kit.hub_keys(session, settings)
    a = f.partner(session, name="partner-a")
    gov = f.partner(session, kind="governance", name="governance")
    c = kit.collection(session, hk, a)
    pdq = kit.submit(session, c, a, [{"type": "pdq", "value": kit.pdq()} for _ in range(2)]).body["ids"]
    md5 = kit.submit(session, c, a, [{"type": "md5", "value": "ab" * 16}]).body["ids"][0]
    kit.seal(session, hk)
    f.as_system(session)
    head = session.get(CollectionHead, c.id)
    assert head is not None and head.size == 1
    root = b64encode(head.root)
    token_a = f.token(session, a, sorted(KIND_SCOPES["platform"]))
    report = {
        "id": "r-1", "signal": {"id": pdq[0]}, "collection": c.id, "seq": 1, "distance": 4,
        "outcome": "pending_review", "matched_at": "2026-01-01T00:00:00Z", "automated_detection": True,
        "automated_decision": True, "surface": "upload", "content_ref": "post-1",
    }
    service.submit(
        session, partner_id=a.id, items=[report], actor=Actor(type="partner", partner=a.id),
        hub_secret=f.hub_secret(settings), flag_threshold=3, now=kit.T0,
    )
    people.create_user(session, gov.id, "ana@example.org", PASSWORD, Actor.operator())
    _user, cookie = people.login(session, "ana@example.org", PASSWORD, kit.T0)
    session.flush()
    return World(
        c.id, pdq, md5, root, f.auth(token_a), f.auth(f.token(session, gov, sorted(KIND_SCOPES["governance"]))),
        "r-1", cookie,
    )


def _get(path: str) -> Callable[[Any, World], Any]:
    return lambda client, w: client.get(path.format(c=w.c, report=w.report), headers=w.a)


def _report(**overrides: str) -> str:
    """A report body of signal pdq0 with raw JSON `overrides` (values are JSON text)."""
    fields = {
        "id": '"r-9"', "signal": '{"id": "{pdq0}"}', "collection": '"{c}"', "seq": "1", "distance": "4",
        "outcome": '"pending_review"', "matched_at": '"2026-01-01T00:00:00Z"', "automated_detection": "true",
        "automated_decision": "true", "surface": '"upload"', "content_ref": '"post-9"',
    }
    fields.update(overrides)
    inner = ", ".join(f'"{k}": {v}' for k, v in fields.items())
    return '{"reports": [{' + inner + "}]}"


def _signal(**overrides: str) -> str:
    fields = {"type": '"pdq"', "value": '"' + "1" * 64 + '"'}
    fields.update(overrides)
    return '{"signals": [{' + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}]}"


def _fmt(template: str) -> str:
    """Turn a body template's literal braces into str.format escapes, keeping {c}, {pdq0} and friends."""
    out = template.replace("{", "{{").replace("}", "}}")
    for name in ("c", "pdq0", "md5", "root", "report"):
        out = out.replace("{{" + name + "}}", "{" + name + "}")
    return out


def _post(method: str, path: str, template: str, who: str = "a") -> Callable[[Any, World], Any]:
    def call(client: Any, w: World) -> Any:
        fields = {"c": w.c, "pdq0": w.pdq[0], "md5": w.md5, "root": w.root, "report": w.report}
        headers = {"a": w.a, "gov": w.gov, "console": {}}[who]
        if who == "console":
            client.set_cookie(people.COOKIE, w.console)
        body = _fmt(template).format(**fields)
        return client.open(
            path.format(**fields), method=method, data=body, content_type="application/json", headers=headers
        )

    return call


ACK = "/v1/collections/{c}/ack"
SIGNALS = "/v1/collections/{c}/signals"
PATCH = "/v1/reports/{report}"
GOV_COLLECTIONS = "/v1/governance/collections"

# (request, expected status)
CASES: dict[str, tuple[Callable[[Any, World], Any], int]] = {
    # 1. JSON nested 3,000 deep, on every route that reads a JSON body
    "deep JSON at ack": (_post("POST", ACK, DEEP), 400),
    "deep JSON at signals": (_post("POST", SIGNALS, '{"signals": ' + DEEP + "}"), 400),
    "deep JSON at reports POST": (_post("POST", "/v1/reports", DEEP), 400),
    "deep JSON at reports PATCH": (_post("PATCH", PATCH, DEEP), 400),
    "deep JSON at match": (_post("POST", "/v1/match", '{"queries": ' + DEEP + "}"), 400),
    "deep JSON at webhooks": (_post("PUT", "/v1/webhooks", DEEP), 400),
    "deep JSON at governance collections": (_post("POST", GOV_COLLECTIONS, DEEP, "gov"), 400),
    "deep JSON at governance retired": (_post("POST", "/v1/governance/retired", DEEP, "gov"), 400),
    "deep JSON at console tokens": (_post("POST", "/console/tokens", DEEP, "console"), 400),
    "JSON nested 40 deep at match": (_post("POST", "/v1/match", '{"queries": ' + "[" * 40 + "]" * 40 + "}"), 400),
    # 2. integers of 5,000 digits (past the parser's limit), and integers past any column
    "5000-digit ack size": (_post("POST", ACK, '{"size": ' + HUGE_DIGITS + ', "root": "{root}"}'), 400),
    "5000-digit quality": (_post("POST", SIGNALS, _signal(quality=HUGE_DIGITS)), 400),
    "5000-digit report seq": (_post("POST", "/v1/reports", _report(seq=HUGE_DIGITS)), 400),
    "5000-digit match threshold": (
        _post("POST", "/v1/match", '{"queries": [{"type": "md5", "value": "' + "ab" * 16 + '", "threshold": '
              + HUGE_DIGITS + "}]}"),
        400,
    ),
    "5000-digit webhook url": (_post("PUT", "/v1/webhooks", '{"url": ' + HUGE_DIGITS + "}"), 400),
    "5000-digit pdq_threshold": (
        _post("POST", GOV_COLLECTIONS, '{"slug": "x", "owner": "y", "pdq_threshold": ' + HUGE_DIGITS + "}", "gov"),
        400,
    ),
    "report seq past int64": (_post("POST", "/v1/reports", _report(seq=str(BIG))), 422),
    "pdq_threshold past int32": (
        _post("POST", GOV_COLLECTIONS, '{"slug": "x", "owner": "y", "pdq_threshold": ' + str(BIG) + "}", "gov"),
        422,
    ),
    "min_quality past int32": (
        _post("POST", GOV_COLLECTIONS, '{"slug": "x", "owner": "y", "min_quality": ' + str(BIG) + "}", "gov"),
        422,
    ),
    "NaN as ack size": (_post("POST", ACK, '{"size": NaN, "root": "{root}"}'), 400),
    "Infinity as report distance": (_post("POST", "/v1/reports", _report(distance="Infinity")), 400),
    # 3. wrong JSON types, lone surrogates and NUL
    "signal type an object": (_post("POST", SIGNALS, _signal(type="{}")), 422),
    "signal type a list": (_post("POST", SIGNALS, _signal(type='["pdq"]')), 422),
    "match type an object": (
        _post("POST", "/v1/match", '{"queries": [{"type": {}, "value": "' + "ab" * 16 + '"}]}'), 422
    ),
    "match type a list": (
        _post("POST", "/v1/match", '{"queries": [{"type": ["md5"], "value": "' + "ab" * 16 + '"}]}'), 422
    ),
    "report signal type an object": (
        _post("POST", "/v1/reports", _report(signal='{"type": {}, "value": "' + "ab" * 16 + '"}')), 422
    ),
    "report outcome a list": (_post("POST", "/v1/reports", _report(outcome='["blocked"]')), 422),
    "lone surrogate in case_ref": (_post("POST", SIGNALS, _signal(case_ref=f'"case-{SURROGATE}"')), 422),
    "lone surrogate in content_ref": (_post("POST", "/v1/reports", _report(content_ref=f'"p{SURROGATE}"')), 422),
    "lone surrogate in report collection": (
        _post("POST", "/v1/reports", _report(collection=f'"{SURROGATE}"')), 422
    ),
    "lone surrogate in a key": (_post("POST", "/v1/reports", _report(**{f"x{SURROGATE}": "1"})), 422),
    "lone surrogate in a token name": (
        _post("POST", "/console/tokens", f'{{"name": "n{SURROGATE}"}}', "console"), 422
    ),
    "lone surrogate in a webhook url": (_post("PUT", "/v1/webhooks", f'{{"url": "https://a{SURROGATE}.org/"}}'), 422),
    "NUL in case_ref": (_post("POST", SIGNALS, _signal(case_ref=f'"case{NUL}"')), 422),
    "NUL in a report signal id": (_post("POST", "/v1/reports", _report(signal=f'{{"id": "x{NUL}"}}')), 422),
    "NUL in a PATCH outcome": (
        _post("PATCH", PATCH, f'{{"outcome": "blocked{NUL}", "automated_decision": true}}'), 422
    ),
    "NUL in a report id path": (_get("/v1/reports/r%00"), 400),
    "NUL in a PATCH report id path": (
        lambda client, w: client.patch("/v1/reports/r%00", json={"outcome": "blocked"}, headers=w.a), 400
    ),
    "NUL in a collection path": (_get("/v1/collections/%00"), 400),
    "NUL in a retracted signal id": (
        lambda client, w: client.delete(f"/v1/collections/{w.c}/signals/x%00", headers=w.a), 400
    ),
    "NUL in a query value": (_get("/v1/reports?collection=%00"), 400),
    "NUL in a query name": (_get("/v1/reports?a%00=1"), 400),
    "NUL in an Idempotency-Key": (
        lambda client, w: client.post(
            f"/v1/collections/{w.c}/signals", json={"signals": [{"type": "md5", "value": "cd" * 16}]},
            headers={**w.a, "Idempotency-Key": "k\x00"},
        ),
        422,
    ),
    # 4. times at the ends of the calendar, with an offset
    "matched_at at year 1 with an offset": (
        _post("POST", "/v1/reports", _report(matched_at='"0001-01-01T00:00:00+01:00"')), 422
    ),
    "matched_at at year 9999 with an offset": (
        _post("POST", "/v1/reports", _report(matched_at='"9999-12-31T23:59:59-01:00"')), 422
    ),
    "actioned_at at year 9999 with an offset": (
        _post("POST", "/v1/reports", _report(outcome='"blocked"', actioned_at='"9999-12-31T23:59:59-01:00"')),
        422,
    ),
    "PATCH actioned_at at year 1 with an offset": (
        _post("PATCH", PATCH, '{"outcome": "blocked", "actioned_at": "0001-01-01T00:00:00+01:00", '
              '"automated_decision": true}'),
        422,
    ),
    "since at year 1 with an offset": (_get("/v1/reports?since=0001-01-01T00:00:00%2B01:00"), 422),
    "until at year 9999 with an offset": (_get("/v1/reports?until=9999-12-31T23:59:59-01:00"), 422),
    "cursor at year 9999 with an offset": (
        lambda client, w: client.get(
            "/v1/reports?cursor=" + _cursor("9999-12-31T23:59:59-01:00"), headers=w.a
        ),
        400,
    ),
    "cursor at year 1 with an offset": (
        lambda client, w: client.get("/v1/reports?cursor=" + _cursor("0001-01-01T00:00:00+01:00"), headers=w.a),
        400,
    ),
    # 5. strict integers, and a distance where none can be
    "ack size 1.5": (_post("POST", ACK, '{"size": 1.5, "root": "{root}"}'), 422),
    "ack size true": (_post("POST", ACK, '{"size": true, "root": "{root}"}'), 422),
    "ack size as a string": (_post("POST", ACK, '{"size": "1", "root": "{root}"}'), 422),
    "report seq 1.0": (_post("POST", "/v1/reports", _report(seq="1.0")), 422),
    "pdq_threshold 31.5": (
        _post("POST", GOV_COLLECTIONS, '{"slug": "x-y", "owner": "y", "pdq_threshold": 31.5}', "gov"), 422
    ),
    "distance for an md5 signal by id": (
        _post("POST", "/v1/reports", _report(signal='{"id": "{md5}"}', distance="3")), 422
    ),
    "distance for an md5 signal by value": (
        _post("POST", "/v1/reports", _report(signal='{"type": "md5", "value": "' + "ab" * 16 + '"}', distance="3")),
        422,
    ),
}


def _cursor(when: str) -> str:
    raw = json.dumps([when, "r-1"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _written(session) -> tuple[int, ...]:
    f.as_system(session)
    return tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (
            AuditEntry, Signal, PendingChange, IdempotencyKey, RetiredValue, Report, ReportOutcome, AccessToken,
            WebhookEndpoint, Collection,
        )
    )


@pytest.mark.parametrize(("call", "status"), CASES.values(), ids=CASES.keys())
def test_hostile_body_is_a_clear_4xx_that_writes_nothing(client, session, world, call, status):
    before = _written(session)
    r = call(client, world)
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    body = r.get_json()
    assert body["code"] == r.status_code and body["status"] and body["message"], body
    if status == 422 and "errors" in body:
        assert isinstance(body["errors"], dict), body
    assert _written(session) == before


def test_a_lone_surrogate_is_named_by_its_place_in_the_body(client, world):
    r = _post("POST", SIGNALS, _signal(case_ref=f'"case-{SURROGATE}"'))(client, world)
    assert r.status_code == 422
    assert r.get_json()["errors"] == {"json": {"signals.0.case_ref": ["text without NUL or unpaired surrogates"]}}


def test_a_body_at_the_depth_limit_is_read(client, world):
    """The depth limit refuses nothing a hub body needs: a report's signal is the deepest (4 levels)."""
    r = _post("POST", "/v1/reports", _report(id='"r-10"'))(client, world)
    assert r.status_code == 201, r.get_json()
    deep_but_fine = '{"queries": ' + "[" * 8 + "]" * 8 + "}"
    r = _post("POST", "/v1/match", deep_but_fine)(client, world)
    assert r.status_code == 422  # a list of lists is no query: refused by the route, not the parser
