"""A hand-built quarter (2026-Q3) with known answers for every aggregate, and tools to forge bundles.

Inside the period: contributor O submits 12 PDQ and 3 MD5 hashes to collection C and withdraws one PDQ hash;
partner A reports 12 matches, each removed (automated detection, human decision) 60 s, 120 s, ... 720 s after
the match; partner B reports 3 matches pending review and later blocks 2 of them automatically, 1,000 s and
2,000 s after their match. A and B fetch feed tokens, A acknowledges the feed, one partner is suspended.
One entry before the period and one after it; the audit checkpoint is signed after the period.

Disputes (partner D, which reads C): two PDQ hashes submitted before the period are disputed before it (X1, X2);
in it X1 is quarantined and later released (its hash published again under a new id), X2 upheld (its hash
retired). Inside the period D disputes three of the period's hashes: X3 (rejected), X4 (quarantined, still
waiting) and X5 (an uphold proposed under the four-eyes rule, not yet confirmed: no event). Governance retires
the third MD5 hash everywhere by its value, and O withdraws a case (one PDQ hash submitted before the period).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy.orm import Session

from audit.canonical import canonical_json, parse_json
from audit.dsse import sign_envelope
from audit.exports import EXPORT_TYPE, parse_period
from audit.signing import Signer
from hub.config import Settings
from hub.feed import signals
from hub.feed.models import Collection
from hub.governance import service as governance
from hub.identity.models import Partner
from hub.reports import service as reports
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys
from tests.hub import factories as f
from tests.hub import feedkit as kit
from tests.hub import reportkit

Q3 = parse_period("2026-Q3")
BEFORE = datetime(2026, 6, 20, tzinfo=UTC)
DURING = datetime(2026, 7, 10, 12, tzinfo=UTC)
OPENED = datetime(2026, 6, 20, 1, tzinfo=UTC)
DISPUTED = datetime(2026, 7, 10, 14, tzinfo=UTC)
LATER = datetime(2026, 8, 20, 9, tzinfo=UTC)
RELEASED = datetime(2026, 8, 20, 10, tzinfo=UTC)
CASE = "helpline case 4711 for Jane Roe"
AFTER = datetime(2026, 10, 2, 8, tzinfo=UTC)
EXPORTED = datetime(2026, 10, 3, 9, tzinfo=UTC)


@contextmanager
def at(moment: datetime) -> Iterator[None]:
    with time_machine.travel(moment, tick=False):
        yield


@dataclass
class Quarter:
    keys: HubKeys
    owner: Partner
    a: Partner
    b: Partner
    regulator: Partner
    c: Collection
    values: list[str]  # every hash value submitted
    content_refs: list[str] = field(default_factory=list)
    pdq_ids: list[str] = field(default_factory=list)
    d: Partner | None = None
    notes: list[str] = field(default_factory=list)  # dispute notes: free text, never in a bundle


def _ts(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def build(session: Session, settings: Settings) -> Quarter:
    with at(BEFORE):
        keys = kit.hub_keys(session, settings)
        owner = kit.partner(session, "owner")
        a = f.partner(session, name="platform-a")
        b = f.partner(session, name="platform-b")
        regulator = f.partner(session, kind="regulator", name="regulator")
        c = kit.collection(session, keys, owner)
        d = f.partner(session, name="platform-d")
        kit.grant(session, keys, c, d, now=BEFORE)
        early = [kit.pdq() for _ in range(3)]
        items: list[dict[str, str]] = [{"type": "pdq", "value": v} for v in early[:2]]
        items.append({"type": "pdq", "value": early[2], "case_ref": CASE})
        before = signals.submit(
            session, collection_id=c.id, partner_id=owner.id, items=items, actor=kit.actor_of(owner),
            hub_secret=keys.hub_secret, now=BEFORE,
        ).body["ids"]
        kit.seal(session, keys, now=BEFORE)
    with at(OPENED):
        x1 = _dispute(session, d, before[0], "x1")
        x2 = _dispute(session, d, before[1], "x2")
        auditlog.record(session, Actor.operator(), "test.before", "test/before")  # X1, X2 before the carried run
    pdq = [kit.pdq() for _ in range(12)]
    md5 = [hashlib.md5(str(i).encode()).hexdigest() for i in range(3)]
    with at(DURING):
        submitted = signals.submit(
            session, collection_id=c.id, partner_id=owner.id,
            items=[{"type": "pdq", "value": v} for v in pdq] + [{"type": "md5", "value": v} for v in md5],
            actor=kit.actor_of(owner), now=DURING,
        )
        ids = submitted.body["ids"]
        kit.seal(session, keys, now=DURING)
        for p in (a, b):
            reportkit.grant(session, keys, c, p)
            auditlog.record(session, kit.actor_of(p), "token.issue", "client/test-client",
                            {"scopes": ["feed:read", "reports:write"], "expires_in": 600})
        auditlog.record(session, kit.actor_of(a), "feed.ack", f"collection/{c.id}",
                        {"partner": a.id, "size": 1, "root": "AAAA"})
        signals.retract(session, collection_id=c.id, signal_id=ids[11], partner_id=owner.id,
                        actor=kit.actor_of(owner), now=DURING)
        checkpoint(session, keys)  # signed while the period is open: no bundle of Q3 may be drawn at it
    q = Quarter(keys, owner, a, b, regulator, c, pdq + md5 + early, pdq_ids=ids[:12] + before, d=d)
    q.notes.append(CASE)
    matched = DURING + timedelta(minutes=5)
    with at(DURING + timedelta(hours=1)):
        items = []
        for i in range(12):
            ref = f"post-a-{i}"
            q.content_refs.append(ref)
            items.append({
                "id": f"a-{i}", "signal": {"id": ids[i % 11]}, "collection": c.id, "seq": 2, "distance": 0,
                "outcome": "removed", "matched_at": _ts(matched),
                "actioned_at": _ts(matched + timedelta(seconds=60 * (i + 1))),
                "automated_detection": True, "automated_decision": False, "surface": "upload", "content_ref": ref,
            })
        reports.submit(session, partner_id=a.id, items=items, actor=kit.actor_of(a),
                       hub_secret=keys.hub_secret, flag_threshold=3)
        items = []
        for i in range(3):
            ref = f"https://platform-b.example/p/{i}"
            q.content_refs.append(ref)
            items.append({
                "id": f"b-{i}", "signal": {"id": ids[12 + i]}, "collection": c.id, "seq": 2, "distance": 0,
                "outcome": "pending_review", "matched_at": _ts(matched), "automated_detection": False,
                "automated_decision": False, "surface": "existing_content", "content_ref": ref,
            })
        reports.submit(session, partner_id=b.id, items=items, actor=kit.actor_of(b),
                       hub_secret=keys.hub_secret, flag_threshold=3)
    with at(DISPUTED):
        _decide(session, x1, "quarantine", DISPUTED)
        x3 = _dispute(session, d, ids[0], "x3", note="Jane Roe's holiday photo")
        x4 = _dispute(session, d, ids[1], "x4")
        x5 = _dispute(session, d, ids[12], "x5")
        _decide(session, x4, "quarantine", DISPUTED)
        q.notes.append("Jane Roe's holiday photo")
    with at(LATER):
        for i, seconds in ((0, 1000), (1, 2000)):
            reports.update_outcome(
                session, partner_id=b.id, report_id=f"b-{i}",
                body={"outcome": "blocked", "actioned_at": _ts(matched + timedelta(seconds=seconds)),
                      "automated_decision": True},
                actor=kit.actor_of(b), flag_threshold=3,
            )
        auditlog.record(session, Actor.operator(), "partner.suspend", f"partner/{owner.id}", {"tokens_revoked": 0})
        _decide(session, x3, "reject", LATER)
        _decide(session, x2, "uphold", LATER)
        _decide(session, x5, "uphold", LATER, four_eyes=True)
        signals.retire_value(session, kind="md5", value=md5[2], actor=Actor.operator(), now=LATER)
        signals.withdraw_case(session, partner_id=owner.id, case_ref=CASE, hub_secret=keys.hub_secret,
                              actor=kit.actor_of(owner), now=LATER)
    with at(RELEASED):
        _decide(session, x1, "release", RELEASED)
    with at(AFTER):
        auditlog.record(session, Actor.operator(), "partner.resume", f"partner/{owner.id}")
        checkpoint(session, keys)
    session.flush()
    return q


def _dispute(session: Session, d: Partner, signal_id: str, key: str, note: str | None = None) -> str:
    body = {"id": key, "reason": "false_positive", "signal": signal_id}
    if note is not None:
        body["note"] = note
    dispute, _ = governance.open_dispute(session, partner_id=d.id, body=body, actor=kit.actor_of(d),
                                         now=datetime.now(UTC))
    return dispute.id


def _decide(session: Session, dispute_id: str, action: str, now: datetime, four_eyes: bool = False) -> None:
    governance.decide(session, dispute_id=dispute_id, action=action, reason=f"{action} after review",
                      staff=governance.Staff.operator(), four_eyes=four_eyes, now=now)


def checkpoint(session: Session, keys: HubKeys) -> None:
    """Sign an audit checkpoint over every entry so far (what the scheduler's job does)."""
    auditlog.integrate(session, keys.audit_origin, keys.signer("audit"), datetime.now(UTC))


# --- forging bundles (a hub that lies signs what it forges: the signature alone proves nothing) ---------


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def forge(data: bytes, changes: dict[str, bytes], signer: Signer, **manifest_changes: object) -> bytes:
    """The bundle with `changes` to its files, its manifest's digests brought up to date (and
    `manifest_changes` applied) and signed again by `signer`."""
    files = members(data)
    files.update(changes)
    manifest = parse_json(files["manifest.json"])
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
    manifest.update(manifest_changes)
    payload = canonical_json(manifest)
    files["manifest.json"] = payload
    files["manifest.dsse.json"] = sign_envelope(EXPORT_TYPE, payload, [signer]).to_json()
    return rezip(files)

