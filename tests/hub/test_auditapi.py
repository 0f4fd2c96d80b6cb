"""The audit log over HTTP: the checkpoint is public; entries and proofs need `audit:read`."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from audit.note import open_checkpoint
from hub.ops.jobs import integrate_audit_log
from hub.transparency.auditlog import Actor, record
from tests.hub import factories as f
from tests.hub.auditkit import HUB, T0, make_hub_keys


@pytest.fixture
def audited(session, session_factory, settings):
    """Nine entries integrated under a signed checkpoint, and a regulator's token with audit:read."""
    hub_keys, _root = make_hub_keys(session, settings)
    regulator = f.partner(session, kind="regulator", name="regulator")
    platform = f.partner(session, kind="platform", name="platform")
    tokens = {
        "audit": f.token(session, regulator, ["audit:read"]),
        "feed": f.token(session, platform, ["feed:read"]),
    }
    for i in range(9):
        record(session, Actor.system("test"), "probe", f"probe/{i}", {"i": i}, now=T0 + timedelta(seconds=i))
    session.commit()
    integrate_audit_log(session_factory, T0 + timedelta(minutes=1), keys=hub_keys)
    f.as_system(session)
    return hub_keys, tokens


def _b64(value):
    return base64.b64decode(value)


def test_checkpoint_is_public_and_proofs_verify_against_it(client, audited):
    hub_keys, tokens = audited
    r = client.get("/v1/audit/checkpoint")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    cp = open_checkpoint(r.get_data(), f"{HUB}/audit", [hub_keys.signer("audit").public_key]).checkpoint
    size = cp.size
    assert size >= 9
    auth = f.auth(tokens["audit"])

    entries = client.get(f"/v1/audit/entries?start=0&end={size}", headers=auth)
    assert entries.status_code == 200
    leaves = [leaf_hash(_b64(e["entry"])) for e in entries.json["entries"]]
    assert [e["seq"] for e in entries.json["entries"]] == list(range(size))

    inc = client.get(f"/v1/audit/proofs/inclusion?seq=3&size={size}", headers=auth)
    assert inc.status_code == 200
    assert _b64(inc.json["leaf_hash"]) == leaves[3]
    verify_inclusion(3, size, leaves[3], [_b64(h) for h in inc.json["proof"]], cp.root)

    con = client.get(f"/v1/audit/proofs/consistency?from=2&to={size}", headers=auth)
    assert con.status_code == 200
    verify_consistency(2, size, _b64(con.json["root1"]), cp.root, [_b64(h) for h in con.json["proof"]])


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/audit/proofs/inclusion?seq=9&size=9", 400),
        ("/v1/audit/proofs/inclusion?seq=0&size=999", 404),
        ("/v1/audit/proofs/inclusion?seq=x&size=3", 422),
        ("/v1/audit/proofs/inclusion?size=3", 422),
        ("/v1/audit/proofs/consistency?from=0&to=3", 422),
        ("/v1/audit/entries?limit=100000", 422),
    ],
    ids=["seq not below size", "size beyond checkpoint", "seq not a number", "seq missing", "from zero",
         "page too large"],
)
def test_bad_requests_get_clear_errors(client, audited, path, status):
    _keys, tokens = audited
    r = client.get(path, headers=f.auth(tokens["audit"]))
    assert r.status_code == status, r.json
    assert r.json["code"] == status and r.json["message"]


@pytest.mark.parametrize("path", ["/v1/audit/entries", "/v1/audit/proofs/inclusion?seq=0&size=1",
                                  "/v1/audit/proofs/consistency?from=1&to=2"])
def test_entries_and_proofs_need_audit_read(client, audited, path):
    _keys, tokens = audited
    assert client.get(path).status_code == 401
    assert client.get(path, headers=f.auth(tokens["feed"])).status_code == 403
