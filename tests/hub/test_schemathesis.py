"""Property-based fuzzing of every operation in the hub's own OpenAPI document (schemathesis), on a fixed budget.

Two platform partners hold every scope their kind allows and each has private rows (a collection only it reads,
a report); the fuzzer's requests carry A's or B's token. Every response must be a non-5xx whose status code and
body the document declares; afterwards A's token must find none of B's private rows. The run is derandomized (the
same examples every run) with a fixed number of examples per operation, so CI is reproducible and bounded.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from hub.identity.models import KIND_SCOPES
from hub.reports import service
from hub.transparency.auditlog import Actor
from tests.hub import factories as f
from tests.hub import feedkit as kit
from tests.hub import reportkit as rk

EXAMPLES_PER_OPERATION = 40
BASE_URL = "https://hub.test"  # the hub refuses plain HTTP from anyone but a loopback peer
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass
class Partners:
    a: dict[str, str]  # A's bearer header
    b: dict[str, str]  # B's bearer header
    b_collection: str  # a collection only B reads
    b_report: str  # B's report id
    a_collection: str
    stats: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def partners(session, settings, time_machine) -> Partners:
    # The data is made at the fixture time T0 (keys, reports): the hub is asked about it the day after.
    time_machine.move_to(kit.T0 + timedelta(days=1))
    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session, "owner")
    a = f.partner(session, name="partner-a")
    b = f.partner(session, name="partner-b")
    shared = kit.collection(session, keys, owner, slug="shared")
    a_only = kit.collection(session, keys, a, slug="a-only")
    b_only = kit.collection(session, keys, b, slug="b-only")
    kit.submit(session, shared, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.submit(session, a_only, a, [{"type": "md5", "value": "ab" * 16}])
    b_signal = kit.submit(session, b_only, b, [{"type": "md5", "value": "cd" * 16}]).body["ids"][0]
    kit.seal(session, keys)
    for p in (a, b):
        rk.grant(session, keys, shared, p)
    service.submit(
        session, partner_id=b.id, actor=Actor(type="partner", partner=b.id), hub_secret=f.hub_secret(settings),
        flag_threshold=3, now=kit.T0,
        items=[{
            "id": "b-report", "signal": {"id": b_signal}, "collection": b_only.id, "seq": 1, "distance": 0,
            "outcome": "pending_review", "matched_at": "2026-01-01T00:00:00Z", "automated_detection": True,
            "automated_decision": True, "surface": "upload", "content_ref": "b-post",
        }],
    )
    session.flush()
    every = sorted(KIND_SCOPES["platform"])
    return Partners(f.auth(f.token(session, a, every)), f.auth(f.token(session, b, every)), b_only.id, "b-report",
                    a_only.id)


def test_every_operation_answers_as_documented_and_never_leaks_another_partner(app, client, partners):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    ran: dict[str, int] = {}
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        ran[label] = 0

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        # Valid requests and invalid ones (wrong types, missing fields, out-of-range values) alike.
        @given(
            case=st.one_of(
                operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
            ),
            as_b=st.booleans(),
        )
        def run(case: Any, as_b: bool) -> None:
            ran[case.operation.method.upper() + " " + case.operation.path] += 1
            headers = partners.b if as_b else partners.a
            response = case.call_and_validate(base_url=BASE_URL, headers=headers, checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            run()
        except Exception as e:  # one operation's failure is reported with the others, not alone
            failures.append(f"{label}: {type(e).__name__}: {str(e)[:1500]}")
    elapsed = time.perf_counter() - started
    print(f"schemathesis: {sum(ran.values())} examples over {len(ran)} operations in {elapsed:.1f} s;"
          f" statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures)
    assert len(ran) >= 30 and all(n > 0 for n in ran.values()), ran

    # Partner isolation: B's private rows are a 404 to A's token, whatever the route.
    for path in (
        f"/v1/reports/{partners.b_report}",
        f"/v1/collections/{partners.b_collection}",
        f"/v1/collections/{partners.b_collection}/checkpoint",
        f"/v1/collections/{partners.b_collection}/batches?since_size=0",
        f"/v1/collections/{partners.b_collection}/batches/1",
        f"/v1/collections/{partners.b_collection}/snapshot",
    ):
        r = client.get(path, headers=partners.a)
        assert r.status_code == 404, (path, r.status_code)
    r = client.patch(f"/v1/reports/{partners.b_report}", json={"outcome": "blocked", "automated_decision": True,
                                                               "actioned_at": "2026-01-01T00:00:00Z"},
                     headers=partners.a)
    assert r.status_code == 404
    listed = client.get("/v1/reports", headers=partners.a).get_json()["reports"]
    assert partners.b_report not in {rep["id"] for rep in listed}
    slugs = {c["slug"] for c in client.get("/v1/collections", headers=partners.a).get_json()}
    assert "b-only" not in slugs and {"a-only", "shared"} <= slugs
