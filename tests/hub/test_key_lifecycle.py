"""Key rotation and revocation on a live hub: what is served after, and what a kit and an auditor verify.

The hub is the real one (tests/partners/realhub.py: a committed database, its WSGI app alive across the
key change); the operator's commands run through `hashfed keys ...`, the kit syncs through the HTTP feed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from audit import cli as audit_cli_main
from audit.dsse import Envelope
from audit.errors import RevokedKeyError
from audit.export import verify_export
from audit.note import SIG_ED25519, Note, note_key_hash
from audit.payloads import open_payload
from hub.cli.audit import audit_group, keys_group
from hub.db import make_engine
from hub.feed import batches
from hub.transparency import auditlog, keys
from partners.client import errors
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.transport import Response, Transport
from partners.client.verify import Policy
from tests.conftest import Database
from tests.hub.keykit import (
    head_root,
    key_of,
    new_mirror,
    operator,
    root_key,
    seeded_collection,
    sync,
    trusted,
)
from tests.partners.realhub import HUB_NAME, FlaskTransport, RealHub

# 2. Revocation: key set N+1, everything the key signed re-signed --------------------------------------------


ROLES = ["batch", "checkpoint", "timestamp", "collection"]


@pytest.mark.parametrize("current", [True, False], ids=["the current key", "a retired key"])
@pytest.mark.parametrize("role", ROLES, ids=[f"{r} key" for r in ROLES])
def test_revocation_resigns_and_kits_before_and_from_zero_verify(
    hub: RealHub, tmp_path: Path, mirrors: list[Mirror], role: str, current: bool
) -> None:
    cid = seeded_collection(hub)
    before = new_mirror(tmp_path, mirrors, "before")
    assert sync(hub, before).ok
    revoked = key_of(hub, role)
    if not current:  # the key was rotated out earlier: its successor re-signs what it signed
        operator(hub, keys_group, "rotate", role, "--root", root_key(hub))
    successor_before = key_of(hub, role)
    root = head_root(hub, cid)

    out = operator(hub, keys_group, "revoke", revoked, "--root", root_key(hub), "--reason", "key file leaked")
    assert f"{role} key {revoked} revoked" in out
    replacement = key_of(hub, role)
    assert replacement != revoked and (replacement != successor_before) is current
    latest = trusted(hub).keyset
    assert latest.keys[revoked].revoked_at is not None
    assert head_root(hub, cid) == root  # payloads unchanged: the log is the same
    with hub.session() as s:
        entry = [json.loads(e) for _, e in auditlog.entries(s, 0, None, limit=1000).entries][-1]
        assert entry["action"] == "keys.revoke" and entry["details"]["reason"] == "key file leaked"
        signed = [json.loads(e)["signatures"] for e in batches.envelopes(s, cid, 1, 3)]
    assert all(sig["keyid"] != revoked for sigs in signed for sig in sigs)

    hub.submit(cid, 7)
    hub.seal(cid)
    report = sync(hub, before)  # walks to the new key set, keeps verifying
    assert report.ok, report.errors()
    assert len(list(before.active_signals(cid))) == 37
    fresh = new_mirror(tmp_path, mirrors, "fresh")
    report = sync(hub, fresh)
    assert report.ok, report.errors()
    assert len(list(fresh.active_signals(cid))) == 37
    walking = new_mirror(tmp_path, mirrors, "walking")  # from zero, batch by batch: every envelope verifies
    report = Syncer(FlaskTransport(hub), walking, hub.pin, Policy(page_limit=2)).sync()
    assert report.ok, report.errors()


class ServeRevoked(Transport):
    """The hub's feed, except that the first batch of each page is signed by a stolen, revoked key."""

    def __init__(self, hub: RealHub, stolen: Any) -> None:
        self.inner = FlaskTransport(hub)
        self.stolen = stolen

    def request(self, method: str, path: str, **kw: Any) -> Response:
        r = self.inner.request(method, path, **kw)
        if not path.endswith("/batches") or r.status != 200:
            return r
        data = json.loads(r.body)
        if data["batches"]:
            payload = Envelope.from_dict(data["batches"][0]).payload
            data["batches"][0] = json.loads(batches.envelope_bytes(payload, self.stolen))
        return Response(200, json.dumps(data).encode(), r.headers)


def test_an_envelope_signed_by_a_revoked_key_is_refused_whatever_its_time(
    hub: RealHub, tmp_path: Path, mirrors: list[Mirror]
) -> None:
    cid = seeded_collection(hub)
    mirror = new_mirror(tmp_path, mirrors, "kit")
    assert sync(hub, mirror).ok
    revoked = key_of(hub, "batch")
    stolen = keys.load_signer(keys.role_key_path(hub.settings.keys_path, "batch"))
    operator(hub, keys_group, "revoke", revoked, "--root", root_key(hub))
    hub.submit(cid, 4)
    hub.seal(cid)
    before = mirror.dump()
    report = sync(hub, mirror, ServeRevoked(hub, stolen))
    error = report.errors()[0]
    assert isinstance(error, errors.EnvelopeError) and "revoked" in str(error)
    assert mirror.dump() == before
    with hub.session() as s:
        payload = bytes(batches.batch(s, cid, 1).payload)  # sealed while the key was valid: still refused
    with pytest.raises(RevokedKeyError):
        open_payload(trusted(hub), batches.envelope_bytes(payload, stolen), batches.BatchPayload)
    assert sync(hub, mirror).ok  # the honest feed applies


def test_only_the_signatures_of_a_signed_row_can_change(hub: RealHub, fresh_database: Database) -> None:
    cid = seeded_collection(hub, 5)
    for url in (fresh_database.app_url, fresh_database.url):  # the application role, then the owner
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                for statement, allowed in (
                    ("UPDATE batches SET signatures = signatures WHERE collection_id = :c", True),
                    ("UPDATE batches SET payload = payload WHERE collection_id = :c", False),
                    ("UPDATE collection_checkpoints SET note = note WHERE collection_id = :c", True),
                    ("UPDATE collection_checkpoints SET root = root WHERE collection_id = :c", False),
                    ("DELETE FROM batches WHERE collection_id = :c", False),
                ):
                    nested = conn.begin()
                    try:
                        conn.execute(text(statement), {"c": cid})
                        refused = None
                    except DBAPIError as e:
                        refused = str(e.orig)
                    finally:
                        nested.rollback()
                    assert (refused is None) is allowed, (url, statement, refused)
        finally:
            engine.dispose()


# The audit key: exports, kept checkpoints, `hashfed-audit verify` ----------------------------------------


def test_revoked_audit_key_export_verifies_with_resigned_notes(
    hub: RealHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded_collection(hub, 5)
    operator(hub, audit_group, "checkpoint")
    before = tmp_path / "before"
    operator(hub, audit_group, "export", "--to", str(before))
    kept = tmp_path / "kept.note"
    assert audit_cli_main.main(["verify", str(before), "--keyset-sha256", hub.pin, "--keep", str(kept)]) == 0
    revoked = key_of(hub, "audit")

    operator(hub, keys_group, "revoke", revoked, "--root", root_key(hub))
    operator(hub, audit_group, "checkpoint")
    after = tmp_path / "after"
    operator(hub, audit_group, "export", "--to", str(after))
    report = verify_export(after, hub.pin)
    assert report.ok, report.verdict
    public = trusted(hub).keyset.keys[revoked].public
    for note in (after / "checkpoints").glob("*.note"):
        hashes = {s.key_hash for s in Note.parse(note.read_text()).signatures}
        assert note_key_hash(f"{HUB_NAME}/audit", SIG_ED25519, public) not in hashes  # every note re-signed
    capsys.readouterr()
    assert audit_cli_main.main(["verify", str(after), "--keyset-sha256", hub.pin, "--checkpoint", str(kept)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "revoked" in out  # the kept note's root is re-committed: a note says so

    # A note signed only by the revoked key, in an export of the new key sets, is refused.
    stale = sorted((before / "checkpoints").glob("*.note"))[-1]
    shutil.copy(stale, after / "checkpoints" / stale.name)
    report = verify_export(after, hub.pin)
    assert not report.ok and "RevokedKeyError" in report.verdict and "fork" not in report.verdict
