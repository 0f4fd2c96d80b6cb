"""Read-only queries behind the console's pages: counts and lists across every partner.

The console reads as the RLS tenant SYSTEM (its users are governance and regulator staff, who oversee every
partner); nothing here writes. Tables are taken from the hub's one metadata (`hub.models`), so the pages read
exactly the columns Alembic manages. No function returns a raw hash value: signals appear by type and an
8-hex-digit prefix at most (`short_hash`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, func, select
from sqlalchemy.orm import Session

from audit.errors import VerificationError
from audit.merkle import b64encode
from audit.note import Checkpoint, open_checkpoint
from hub.errors import NotFoundError
from hub.governance.models import FINAL, Dispute
from hub.models import metadata
from hub.transparency import auditlog, keys

# Weeks of reports the dashboard's chart shows, the current ISO week last.
CHART_WEEKS = 12
# Audit entries per page of the audit browser.
AUDIT_PAGE = 50
# Age buckets of open disputes (upper bounds; the last bucket is open-ended).
DISPUTE_AGES: tuple[tuple[str, timedelta | None], ...] = (
    ("under 1 day", timedelta(days=1)),
    ("1 to 7 days", timedelta(days=7)),
    ("7 to 30 days", timedelta(days=30)),
    ("over 30 days", None),
)


def _t(name: str) -> Table:
    return metadata.tables[name]


def _pairs(session: Session, query: Select[Any]) -> dict[Any, Any]:
    """A two-column query as a dict."""
    return {key: value for key, value in session.execute(query)}


def short_hash(value: bytes | str | None) -> str:
    """At most 8 hex digits of a hash or root: enough to tell two apart, never the value itself."""
    if value is None:
        return ""
    digits = value.hex() if isinstance(value, bytes) else value
    return digits[:8]


# --- dashboard ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalCount:
    collection_id: str
    slug: str
    type: str
    active: int


def active_signals(session: Session) -> list[SignalCount]:
    """Active signals by collection and type."""
    s, c = _t("signals"), _t("collections")
    rows = session.execute(
        select(c.c.id, c.c.slug, s.c.type, func.count())
        .select_from(s.join(c, c.c.id == s.c.collection_id))
        .where(s.c.status == "active")
        .group_by(c.c.id, c.c.slug, s.c.type)
        .order_by(c.c.slug, s.c.type)
    )
    return [SignalCount(cid, slug, kind, int(n)) for cid, slug, kind, n in rows]


def iso_week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the ISO week holding `moment`."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def iso_week_label(start: datetime) -> str:
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class WeekOutcomes:
    label: str  # ISO week, e.g. 2026-W03
    start: datetime
    counts: dict[str, int]  # outcome -> reports matched that week, by their current outcome

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def reports_by_week(session: Session, now: datetime, weeks: int = CHART_WEEKS) -> list[WeekOutcomes]:
    """Reports by their current outcome per ISO week of matching, the last `weeks` weeks (UTC), oldest first."""
    r = _t("reports")
    first = iso_week_start(now) - timedelta(weeks=weeks - 1)
    week = func.date_trunc("week", func.timezone("UTC", r.c.matched_at))
    rows = session.execute(
        select(week, r.c.outcome, func.count())
        .where(r.c.matched_at >= first)
        .group_by(week, r.c.outcome)
    )
    counts: dict[datetime, dict[str, int]] = defaultdict(dict)
    for start, outcome, n in rows:
        counts[start.replace(tzinfo=UTC)][outcome] = int(n)
    out = []
    for i in range(weeks):
        start = first + timedelta(weeks=i)
        out.append(WeekOutcomes(iso_week_label(start), start, counts.get(start, {})))
    return out


@dataclass(frozen=True)
class DisputeAges:
    recorded: bool  # whether the hub records disputes (it does since hub/governance)
    buckets: list[tuple[str, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.buckets)


def open_disputes_by_age(session: Session, now: datetime) -> DisputeAges:
    """Disputes not yet settled (hub/governance/models.py FINAL), by how long ago they were opened."""
    opened = session.scalars(
        select(Dispute.opened_at).where(Dispute.status.not_in([s.value for s in FINAL]))
    ).all()
    counts = [0] * len(DISPUTE_AGES)
    for at in opened:
        age = now - at
        for i, (_label, bound) in enumerate(DISPUTE_AGES):
            if bound is None or age < bound:
                counts[i] += 1
                break
    return DisputeAges(True, [(label, n) for (label, _), n in zip(DISPUTE_AGES, counts, strict=True)])


@dataclass(frozen=True)
class Ack:
    """A partner's latest acknowledgement of a collection's log (its `feed.ack` audit entry's seq)."""

    partner_id: str
    collection_id: str
    size: int
    at: datetime
    audit_seq: int


def acks(session: Session, *, partner_id: str | None = None, collection_id: str | None = None) -> list[Ack]:
    """The newest ack of each (partner, collection), newest first (`feed_acks`, kept beside each `feed.ack`
    audit entry)."""
    a = _t("feed_acks")
    query = select(a.c.partner_id, a.c.collection_id, a.c.size, a.c.acked_at, a.c.audit_seq)
    if partner_id:
        query = query.where(a.c.partner_id == partner_id)
    if collection_id:
        query = query.where(a.c.collection_id == collection_id)
    rows = session.execute(query.order_by(a.c.audit_seq.desc()))
    return [Ack(p, c, int(size), at, int(seq)) for p, c, size, at, seq in rows]


# --- partners ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerRow:
    id: str
    name: str
    kind: str
    status: str
    created_at: datetime
    clients: int  # OAuth clients not revoked
    people: int  # staff users, active
    last_token: datetime | None  # newest access token issued to one of its machines (its last sync or call)
    last_ack: Ack | None


def partners(session: Session) -> list[PartnerRow]:
    """Every partner with its clients, people, last token and last acknowledgement."""
    p, c, u, t = _t("partners"), _t("oauth_clients"), _t("users"), _t("access_tokens")
    clients = _pairs(
        session, select(c.c.partner_id, func.count()).where(c.c.revoked_at.is_(None)).group_by(c.c.partner_id)
    )
    people = _pairs(
        session, select(u.c.partner_id, func.count()).where(u.c.status == "active").group_by(u.c.partner_id)
    )
    tokens = _pairs(
        session,
        select(t.c.partner_id, func.max(t.c.issued_at)).where(t.c.client_id.is_not(None)).group_by(t.c.partner_id),
    )
    last_ack: dict[str, Ack] = {}
    for a in acks(session):
        last_ack.setdefault(a.partner_id, a)
    rows = session.execute(select(p.c.id, p.c.name, p.c.kind, p.c.status, p.c.created_at).order_by(p.c.name))
    return [
        PartnerRow(pid, name, kind, status, created, int(clients.get(pid, 0)), int(people.get(pid, 0)),
                   tokens.get(pid), last_ack.get(pid))
        for pid, name, kind, status, created in rows
    ]


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    auth_method: str
    scopes: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Membership:
    collection_id: str
    slug: str
    access: str
    granted_at: datetime


@dataclass(frozen=True)
class PartnerDetail:
    partner: PartnerRow
    clients: list[ClientRow]
    memberships: list[Membership]
    owned: list[tuple[str, str]]  # (collection id, slug)
    signals: dict[str, int]  # status -> signals it contributed
    reports: dict[str, int]  # current outcome -> reports it made
    acks: list[Ack]


def partner(session: Session, partner_id: str) -> PartnerDetail:
    row = next((r for r in partners(session) if r.id == partner_id), None)
    if row is None:
        raise NotFoundError("no such partner")
    c, m, col, s, r = (_t(n) for n in ("oauth_clients", "collection_members", "collections", "signals", "reports"))
    clients = [
        ClientRow(*x)
        for x in session.execute(
            select(c.c.client_id, c.c.name, c.c.auth_method, c.c.scopes, c.c.created_at, c.c.revoked_at)
            .where(c.c.partner_id == partner_id)
            .order_by(c.c.created_at)
        )
    ]
    memberships = [
        Membership(*x)
        for x in session.execute(
            select(col.c.id, col.c.slug, m.c.access, m.c.granted_at)
            .select_from(m.join(col, col.c.id == m.c.collection_id))
            .where(m.c.partner_id == partner_id)
            .order_by(col.c.slug, m.c.access)
        )
    ]
    owned = [(i, slug) for i, slug in session.execute(
        select(col.c.id, col.c.slug).where(col.c.owner_id == partner_id).order_by(col.c.slug))]
    signals = _pairs(
        session, select(s.c.status, func.count()).where(s.c.contributor_id == partner_id).group_by(s.c.status)
    )
    reports = _pairs(
        session, select(r.c.outcome, func.count()).where(r.c.partner_id == partner_id).group_by(r.c.outcome)
    )
    return PartnerDetail(row, clients, memberships, owned, signals, reports, acks(session, partner_id=partner_id))


# --- collections -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionRow:
    id: str
    slug: str
    category: str
    owner_id: str
    owner: str
    signal_types: str
    pdq_threshold: int
    min_quality: int
    created_at: datetime
    size: int  # batches sealed (the log's tree size)
    active: int  # active signals
    readers: int
    contributors: int


def collections(session: Session) -> list[CollectionRow]:
    col, p, h, s, m = (_t(n) for n in ("collections", "partners", "collection_heads", "signals", "collection_members"))
    active = _pairs(
        session, select(s.c.collection_id, func.count()).where(s.c.status == "active").group_by(s.c.collection_id)
    )
    members: dict[tuple[str, str], int] = {
        (cid, access): int(n)
        for cid, access, n in session.execute(
            select(m.c.collection_id, m.c.access, func.count()).group_by(m.c.collection_id, m.c.access))
    }
    rows = session.execute(
        select(col.c.id, col.c.slug, col.c.category, col.c.owner_id, p.c.name, col.c.signal_types,
               col.c.pdq_threshold, col.c.min_quality, col.c.created_at, func.coalesce(h.c.size, 0))
        .select_from(col.join(p, p.c.id == col.c.owner_id).outerjoin(h, h.c.collection_id == col.c.id))
        .order_by(col.c.slug)
    )
    return [
        CollectionRow(cid, slug, cat, owner_id, owner, types, thr, q, created, int(size), int(active.get(cid, 0)),
                      members.get((cid, "reader"), 0), members.get((cid, "contributor"), 0))
        for cid, slug, cat, owner_id, owner, types, thr, q, created, size in rows
    ]


@dataclass(frozen=True)
class MemberRow:
    partner_id: str
    name: str
    kind: str
    access: str
    granted_at: datetime


@dataclass(frozen=True)
class CollectionDetail:
    collection: CollectionRow
    description: str
    members: list[MemberRow]
    signals: dict[tuple[str, str], int]  # (type, status) -> count
    reports: dict[str, int]  # current outcome -> count
    root_prefix: str  # 8 hex digits of the log's root at its head
    cosigned_at: datetime | None
    sealed_at: datetime | None
    acks: list[tuple[str, Ack]]  # (partner name, its newest ack)


def collection(session: Session, collection_id: str) -> CollectionDetail:
    row = next((r for r in collections(session) if r.id == collection_id), None)
    if row is None:
        raise NotFoundError("no such collection")
    col, m, p, s, r, h = (
        _t(n) for n in ("collections", "collection_members", "partners", "signals", "reports", "collection_heads")
    )
    description = session.scalar(select(col.c.description).where(col.c.id == collection_id)) or ""
    members = [
        MemberRow(*x)
        for x in session.execute(
            select(p.c.id, p.c.name, p.c.kind, m.c.access, m.c.granted_at)
            .select_from(m.join(p, p.c.id == m.c.partner_id))
            .where(m.c.collection_id == collection_id)
            .order_by(p.c.name, m.c.access)
        )
    ]
    signals = {
        (kind, status): int(n)
        for kind, status, n in session.execute(
            select(s.c.type, s.c.status, func.count()).where(s.c.collection_id == collection_id)
            .group_by(s.c.type, s.c.status))
    }
    reports = _pairs(
        session, select(r.c.outcome, func.count()).where(r.c.collection_id == collection_id).group_by(r.c.outcome)
    )
    head = session.execute(
        select(h.c.root, h.c.cosigned_at, h.c.sealed_at).where(h.c.collection_id == collection_id)
    ).first()
    names = _pairs(session, select(p.c.id, p.c.name))
    return CollectionDetail(
        row, description, members, signals, reports,
        short_hash(bytes(head[0])) if head else "", head[1] if head else None, head[2] if head else None,
        [(names.get(a.partner_id, a.partner_id), a) for a in acks(session, collection_id=collection_id)],
    )


# --- audit log ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    seq: int
    time: str
    action: str
    subject: str
    actor: str
    details: str  # the details object as compact JSON
    entry_b64: str  # the exact canonical bytes, for the browser to hash


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    total: int  # entries recorded
    older: int | None  # `before` of the next (older) page
    newer: int | None  # `before` of the previous (newer) page


def audit_page(session: Session, before: int | None, page: int = AUDIT_PAGE) -> AuditPage:
    """Entries below `before` (default: every one), newest first, `page` of them."""
    e = _t("audit_entries")
    total = int(session.scalar(select(func.coalesce(func.max(e.c.seq) + 1, 0))) or 0)
    end = total if before is None else max(0, min(before, total))
    start = max(0, end - page)
    got = auditlog.entries(session, start, end, limit=max(1, end - start)) if end > start else None
    names = partner_names(session)
    rows = []
    for seq, raw in reversed(got.entries if got else []):
        entry = json.loads(raw)
        actor = entry.get("actor", {})
        if "user" in actor:
            who = f"user {actor['user']}"
        elif "partner" in actor:
            who = f"partner {names.get(actor['partner'], actor['partner'])}"
        else:
            who = "/".join(str(actor[k]) for k in ("type", "name") if k in actor)
        rows.append(AuditRow(seq, entry.get("time", ""), entry.get("action", ""), entry.get("subject", ""), who,
                             json.dumps(entry.get("details", {}), separators=(",", ":"), sort_keys=True),
                             b64encode(raw)))
    return AuditPage(rows, total, start if start > 0 else None, min(total, end + page) if end < total else None)


@dataclass(frozen=True)
class LatestCheckpoint:
    note: str
    size: int
    root_b64: str
    created_at: datetime
    signature_ok: bool
    signature_problem: str | None


def latest_checkpoint(session: Session, hub_name: str) -> LatestCheckpoint | None:
    """The audit log's newest signed checkpoint, its signature checked here against the key set's audit keys."""
    row = auditlog.latest_checkpoint(session)
    if row is None:
        return None
    problem: str | None = None
    try:
        keyset = keys.current_keyset(session)
        open_checkpoint(row.note, f"{hub_name}/audit", list(keyset.role_keys("audit").values()))
    except (VerificationError, keys.KeysError) as e:
        problem = str(e)
    body = row.note.split("\n\n", 1)[0] + "\n"
    try:
        parsed = Checkpoint.from_text(body)
        size, root = parsed.size, b64encode(parsed.root)
    except VerificationError:
        size, root = int(row.size), b64encode(bytes(row.root))
        problem = problem or "the note's body is not a checkpoint"
    return LatestCheckpoint(row.note, size, root, row.created_at, problem is None, problem)


def inclusion_proof(session: Session, seq: int, size: int) -> dict[str, Any]:
    """The inclusion proof as /v1/audit/proofs/inclusion serves it (base64 hashes)."""
    proof = auditlog.inclusion_proof(session, seq, size)
    return {
        "seq": proof.seq,
        "size": proof.size,
        "leaf_hash": b64encode(proof.leaf_hash),
        "root": b64encode(proof.root),
        "proof": [b64encode(h) for h in proof.proof],
    }


def partner_names(session: Session) -> dict[str, str]:
    p = _t("partners")
    return _pairs(session, select(p.c.id, p.c.name))


def collection_slugs(session: Session) -> dict[str, str]:
    c = _t("collections")
    return _pairs(session, select(c.c.id, c.c.slug))



# --- review: what the governance pages add to hub/governance/service.py --------------------------------------


def signal_label(session: Session, signal_id: str) -> tuple[str, str]:
    """A signal's type and the first 8 hex digits of its value: how the console names a hash."""
    s = _t("signals")
    row = session.execute(select(s.c.type, s.c.value).where(s.c.id == signal_id)).first()
    if row is None:
        return "", ""
    return str(row[0]), short_hash(str(row[1]))


def staff_users(session: Session) -> dict[str, str]:
    """User id -> email of every staff user (decisions and assignees name users by id)."""
    u = _t("users")
    return _pairs(session, select(u.c.id, u.c.email))
