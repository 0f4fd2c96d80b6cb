"""Signals: hash submission (bulk, validated, deduplicated, idempotent), case claims, retraction and retirement.

A submission is all or nothing: one bad item refuses the whole request (422 naming each bad item), a
retired (type, value) refuses it with a 409, and otherwise every new signal is inserted in chunks with one
audit entry for the request. New signals and retractions wait as `pending` changes until the sealer
(hub/feed/batches.py) puts them into the collection's next batch.

Every contribution is a claim (`signal_claims`): the contributing partner and its case, the case reference kept
only as a keyed digest. A duplicate adds its claim to the signal already there; withdrawing a case removes its
claims, and a signal leaves the feed when no claim is left on it. Governance (hub/governance) withholds,
re-publishes and retires signals through the functions at the end of this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub import rls
from hub.db import UTCDateTime, durable_before_answering, utcnow
from hub.errors import ConflictError, NotFoundError, PayloadTooLargeError, ValidationError
from hub.feed import collections
from hub.feed.models import (
    FEED_TYPES,
    MAX_CASE_REF_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    Collection,
    IdempotencyKey,
    Pending,
    PendingChange,
    RetiredValue,
    Signal,
    SignalClaim,
    SignalSeq,
    SignalStatus,
    VpdqValue,
)
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.keys import keyed_digest
from partners.matching.errors import InvalidHashError
from partners.matching.signals import EXACT_HEX_LEN, HEX_LEN
from partners.matching.vpdq import normalize_vpdq, vpdq_digest

MAX_SIGNALS_PER_REQUEST = 10_000
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
# A bulk audit entry lists the new ids up to this many; beyond it, their count and digest.
AUDIT_ID_LIST_LIMIT = 100

HEX_LENGTHS = {t.value: n for t, n in HEX_LEN.items()}
VPDQ = "vpdq"  # a video's frames: stored under the SHA-256 of their canonical text (docs/adr/0014)
EXACT_TYPES = frozenset(t.value for t in EXACT_HEX_LEN)  # matched by equality: a match's distance is 0
ZERO_PDQ = "0" * 64  # real feeds have carried it: the hash of a blank image matches everything blank
_HEX = re.compile(r"[0-9a-fA-F]*")
_HEX_OF = {kind: re.compile(f"[0-9a-fA-F]{{{n}}}") for kind, n in HEX_LENGTHS.items()}
# What a tag may be (the request schema in hub/feed/schemas.py checks the same pattern).
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_ITEM_KEYS = frozenset({"type", "value", "quality", "tags", "case_ref"})


class Item(NamedTuple):
    """A validated, normalized submission item (a tuple: validation makes up to 10,000 per request)."""

    type: str
    value: str  # lowercase hex; for vpdq the SHA-256 of `frames`
    quality: int | None
    tags: str | None
    case_ref: str | None
    frames: str | None = None  # vpdq only: the canonical frames text (partners/matching/vpdq.py)


def parse_vpdq_value(value: Any) -> tuple[str, str]:
    """(digest, canonical text) of a submitted vpdq value, or :class:`ValueError` saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError("a vpdq value is a string (a JSON array of frames, docs/formats.md)")
    try:
        canonical = normalize_vpdq(value)
    except InvalidHashError as e:
        raise ValueError(str(e)) from e
    return vpdq_digest(canonical), canonical


@dataclass
class Submitted:
    """The outcome of a submission: the response body, and whether it was an idempotent replay."""

    body: dict[str, Any]
    status: int = 201
    replayed: bool = False
    new_ids: list[str] = field(default_factory=list)


def _item_problems(raw: Any, types: Sequence[str], min_quality: int) -> tuple[Item | None, list[str]]:
    if not isinstance(raw, dict):
        return None, ["an item is an object with type and value"]
    problems: list[str] = []
    extra = raw.keys() - _ITEM_KEYS
    if extra:
        problems.append(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    kind, value = raw.get("type"), raw.get("value")
    if not isinstance(kind, str):  # an object or a list is no type, and cannot be looked up in a dict
        kind = None
    frames: str | None = None
    if kind not in FEED_TYPES:
        problems.append(f"type must be one of {', '.join(FEED_TYPES)}")
    elif kind not in types:
        problems.append(f"this collection does not take {kind} signals")
    if kind == VPDQ and kind in types:
        try:
            value, frames = parse_vpdq_value(value)
        except ValueError as e:
            problems.append(str(e))
    elif not isinstance(value, str):
        problems.append("value must be a string of hex digits")
    elif kind in HEX_LENGTHS:
        if len(value) != HEX_LENGTHS[kind]:
            problems.append(f"a {kind} value is {HEX_LENGTHS[kind]} hex characters, got {len(value)}")
        elif not _HEX.fullmatch(value):
            problems.append("value is not hex")
        elif kind == "pdq" and value == ZERO_PDQ:
            problems.append("the all-zero PDQ hash is refused")
    quality = raw.get("quality")
    if quality is not None:
        if kind != "pdq":
            problems.append("quality applies to pdq signals only")
        elif type(quality) is not int or not 0 <= quality <= 100:
            problems.append("quality must be an integer from 0 to 100")
        elif quality < min_quality:
            problems.append(f"quality {quality} is below this collection's minimum {min_quality}")
    tags = raw.get("tags")
    tags_json: str | None = None
    if tags is not None:
        if (
            not isinstance(tags, list)
            or len(tags) > MAX_TAGS
            or not all(isinstance(t, str) and len(t) <= MAX_TAG_LENGTH and TAG.fullmatch(t) for t in tags)
        ):
            problems.append(
                f"tags must be a list of at most {MAX_TAGS} strings of 1-{MAX_TAG_LENGTH} "
                "letters, digits and _.:/-"
            )
        elif tags:
            tags_json = json.dumps(sorted(set(tags)), separators=(",", ":"))
    case_ref = raw.get("case_ref")
    if case_ref is not None and (
        not isinstance(case_ref, str) or not 0 < len(case_ref) <= MAX_CASE_REF_LENGTH
    ):
        problems.append(f"case_ref must be a string of 1-{MAX_CASE_REF_LENGTH} characters")
    if problems:
        return None, problems
    return Item(str(kind), str(value).lower(), quality, tags_json, case_ref, frames), []


def validate(items: Any, types: Sequence[str], min_quality: int) -> list[Item]:
    """Normalize every item or raise: 413 over the limit, 422 naming each bad item by its index.

    The common item (a known type, a hex value of the right length, an optional quality, no tags) takes a
    fast path of a few checks; anything else goes through `_item_problems`, which names every problem.
    """
    if not isinstance(items, list) or not items:
        raise ValidationError("signals must be a non-empty list", errors={"signals": ["a non-empty list"]})
    if len(items) > MAX_SIGNALS_PER_REQUEST:
        raise PayloadTooLargeError(f"at most {MAX_SIGNALS_PER_REQUEST} signals per request, got {len(items)}")
    patterns = {kind: _HEX_OF[kind] for kind in types if kind in _HEX_OF}
    out: list[Item] = []
    append = out.append
    errors: dict[str, list[str]] = {}
    keys = _ITEM_KEYS
    for i, raw in enumerate(items):
        if type(raw) is dict and raw.keys() <= keys and "tags" not in raw:
            kind = raw.get("type")
            value = raw.get("value")
            pattern = patterns.get(kind) if type(kind) is str else None
            if pattern is not None and type(value) is str and pattern.fullmatch(value):
                value = value.lower()
                quality = raw.get("quality")
                case_ref = raw.get("case_ref")
                if (
                    value != ZERO_PDQ
                    and (quality is None or (kind == "pdq" and type(quality) is int and min_quality <= quality <= 100))
                    and (case_ref is None or (type(case_ref) is str and 0 < len(case_ref) <= MAX_CASE_REF_LENGTH))
                ):
                    append(Item(str(kind), value, quality, None, case_ref))
                    continue
        item, problems = _item_problems(raw, types, min_quality)
        if problems:
            errors[str(i)] = problems
        elif item is not None:
            append(item)
    if errors:
        raise ValidationError(
            f"{len(errors)} of {len(items)} signals are invalid", errors={"signals": errors}
        )
    return out


# One index probe per item, whatever the planner's (often stale, right after bulk ingest) statistics
# say: a LATERAL subquery with LIMIT is not flattened into a join, so it cannot become a hash join over the table.
_LOOKUP_RETIRED_PG = text(
    # Values a submission may not add: retired everywhere, or quarantined in this collection (under review).
    "SELECT u.type, u.value, r.why FROM unnest(string_to_array(:types, ','), string_to_array(:values, ','))"
    " AS u(type, value) CROSS JOIN LATERAL ("
    "(SELECT 'retired' AS why FROM retired_values r WHERE r.type = u.type AND r.value = u.value)"
    " UNION ALL (SELECT 'quarantined' FROM signals q WHERE q.collection_id = :c AND q.type = u.type"
    " AND q.value = u.value AND q.status = 'quarantined') LIMIT 1) AS r"
)
_LOOKUP_ACTIVE_PG = text(
    "SELECT u.type, u.value, s.id FROM unnest(string_to_array(:types, ','), string_to_array(:values, ','))"
    " AS u(type, value) CROSS JOIN LATERAL (SELECT id FROM signals WHERE collection_id = :c AND type = u.type"
    " AND value = u.value AND status = 'active' LIMIT 1) AS s"
)
# Each statement's plan is cheap next to JIT-compiling it, yet the estimated cost of 10,000 index probes
# crosses jit_above_cost. For this transaction only.
_NO_JIT_PG = text("SET LOCAL jit = off")
# The partial unique index of active values: a new signal that is already active in its collection violates it.
_ACTIVE_VALUE_INDEX = "uq_signals_active_value"


def _pg_array(values: Iterable[str | int | None]) -> str:
    """A PostgreSQL array literal, sent as one string the server parses in one go (psycopg2 renders a list
    as ARRAY[...] of 10,000 separate constants)."""
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
        elif isinstance(v, int):
            parts.append(str(v))
        else:
            parts.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def _pg_list(values: Iterable[str]) -> str:
    """Values with no comma and no NULL (hex digests, ids, type names) for `string_to_array(:x, ',')`, which
    the server splits in about half the time it parses an array literal."""
    return ",".join(values)


_REFUSALS = {
    "retired": "this hash was retired and may not be submitted again",
    "quarantined": "this hash is quarantined in this collection while staff review a dispute",
}


def refused(session: Session, collection_id: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The (type, stored value) pairs a submission may not add, with why: `retired` or `quarantined` (one
    query). Values as stored: lowercase hex, a vpdq video by its digest."""
    rows = session.execute(
        _LOOKUP_RETIRED_PG,
        {"c": collection_id, "types": _pg_list(t for t, _ in pairs), "values": _pg_list(v for _, v in pairs)},
    )
    return {(t, v): why for t, v, why in rows}


def _existing(
    session: Session, collection_id: str, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Ids of the active signals among `pairs` in the collection (one query)."""
    rows = session.execute(
        _LOOKUP_ACTIVE_PG,
        {"c": collection_id, "types": _pg_list(t for t, _ in pairs), "values": _pg_list(v for _, v in pairs)},
    )
    return {(t, v): i for t, v, i in rows}


_INSERT_PG = text(
    # One statement: the new rows from arrays, and their pending adds from what was inserted.
    "WITH new AS ("
    " INSERT INTO signals (id, collection_id, type, value, quality, tags, contributor_id, plain_claim, status,"
    " added_audit_seq, created_at)"
    " SELECT u.id, :c, u.type, u.value, u.quality, u.tags, :p, u.plain, 'active', :a, :now"
    " FROM unnest(string_to_array(:ids, ','), string_to_array(:types, ','), string_to_array(:values, ','),"
    " CAST(:qualities AS integer[]), CAST(:tags AS text[]), CAST(:plain AS boolean[]))"
    " AS u(id, type, value, quality, tags, plain)"
    " RETURNING id, type, value, quality, tags)"
    " INSERT INTO pending_changes (collection_id, signal_id, op, audit_seq, type, value, quality, tags)"
    " SELECT :c, id, 'add', :a, type, value, quality, tags FROM new"
).bindparams(bindparam("now", type_=UTCDateTime()))
_CLAIM_PG = text(
    # Every item's claim, new signal or duplicate; a claim made before (same signal, partner and case) stays.
    "INSERT INTO signal_claims (signal_id, partner_id, case_digest, audit_seq, created_at)"
    " SELECT u.id, :p, u.d, :a, :now FROM unnest(string_to_array(:ids, ','), CAST(:digests AS text[])) AS u(id, d)"
    " ON CONFLICT DO NOTHING"
).bindparams(bindparam("now", type_=UTCDateTime()))


def _insert(
    session: Session,
    collection_id: str,
    partner_id: str,
    audit_seq: int,
    now: datetime,
    ids: Sequence[str],
    items: Sequence[Item],
    plain: Sequence[bool],
) -> None:
    if not ids:
        return
    session.execute(
        _INSERT_PG,
        {
            "c": collection_id,
            "p": partner_id,
            "a": audit_seq,
            "now": now,
            "ids": _pg_list(ids),
            "types": _pg_list(it.type for it in items),
            "values": _pg_list(it.value for it in items),
            "qualities": _pg_array(it.quality for it in items),
            "tags": _pg_array(it.tags for it in items),
            "plain": _pg_array("t" if p else "f" for p in plain),
        },
    )


def _store_frames(session: Session, items: Sequence[Item]) -> None:
    """Keep the frames text of each new vpdq value under its digest (once: the table is content-addressed)."""
    rows = {it.value: it.frames for it in items if it.frames is not None}
    if rows:
        session.execute(
            pg_insert(VpdqValue)
            .values([{"sha256": digest, "frames": text} for digest, text in rows.items()])
            .on_conflict_do_nothing()
        )


def case_digest(hub_secret: bytes, partner_id: str, case_ref: str) -> str:
    """The keyed digest a case reference is stored as: separated by partner, useless without the hub secret."""
    return keyed_digest(hub_secret, f"case-ref\x00{partner_id}\x00{case_ref}")


def _claim(
    session: Session,
    partner_id: str,
    audit_seq: int,
    now: datetime,
    ids: Sequence[str],
    items: Sequence[Item],
    hub_secret: bytes | None,
    plain: set[str],
) -> None:
    """Insert the claim rows of a submission: every item with a case, and every item without one on a signal
    that is not this request's own new signal with its `plain_claim`."""
    digests: dict[str, str] = {}
    claims: dict[tuple[str, str], None] = {}
    for sid, it in zip(ids, items, strict=True):
        ref = it.case_ref
        if ref is None:
            if sid not in plain:
                claims[(sid, "")] = None
            continue
        if hub_secret is None:
            raise ValueError("a case reference is stored as a keyed digest: pass the hub secret")
        digest = digests.get(ref)
        if digest is None:
            digest = digests[ref] = case_digest(hub_secret, partner_id, ref)
        claims[(sid, digest)] = None
    if not claims:
        return
    session.execute(
        _CLAIM_PG,
        {
            "p": partner_id,
            "a": audit_seq,
            "now": now,
            "ids": _pg_list(sid for sid, _ in claims),
            "digests": _pg_array(d for _, d in claims),
        },
    )


# The variant nibble of a UUID (RFC 9562 section 4.1: binary 10xx) from any random hex digit.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def new_ids(count: int) -> list[str]:
    """`count` fresh signal ids, in increasing order: UUID version 7 (RFC 9562), 48-bit Unix milliseconds then
    74 random bits.

    Time-ordered ids make the primary key and the pending changes grow at their right edge instead of
    touching a random index page per row, and the sealer's id order follows submission order. Sorted within
    a request too (they share one millisecond), so rows are stored in id order and the sealer's inserts into
    `signal_seqs`, which follow it, append to the index's rightmost page.
    """
    stamp = f"{time.time_ns() // 1_000_000:012x}"
    head = f"{stamp[:8]}-{stamp[8:]}-7"
    noise = os.urandom(10 * count).hex()
    return sorted(
        f"{head}{noise[i : i + 3]}-{_VARIANT[noise[i + 3]]}{noise[i + 4 : i + 7]}-{noise[i + 7 : i + 19]}"
        for i in range(0, 20 * count, 20)
    )


def ids_digest(ids: Iterable[str]) -> str:
    """Lowercase hex SHA-256 of the ids joined by newlines: how a bulk audit entry names its signals."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _replay(session: Session, partner_id: str, key: str, request_sha256: str) -> Submitted | None:
    row = session.get(IdempotencyKey, (partner_id, key))
    if row is None:
        return None
    if row.request_sha256 != request_sha256:
        raise ValidationError(
            "this Idempotency-Key was used with another request",
            errors={"Idempotency-Key": ["reused with a different body"]},
        )
    durable_before_answering(session)  # the stored answer may belong to a commit not yet on disk
    return Submitted(json.loads(row.response), row.status, replayed=True)


def _write(
    session: Session,
    collection_id: str,
    partner_id: str,
    valid: Sequence[Item],
    distinct: int,
    known: dict[tuple[str, str], str],
    actor: Actor,
    now: datetime,
    hub_secret: bytes | None,
) -> tuple[dict[str, Any], list[str]]:
    """Record the submission, insert the items not in `known` (the ids of active signals by (type, value)) and
    every item's claim; return the response body and the new ids. `distinct`: how many different (type, value)
    pairs `valid` holds."""
    known = dict(known)
    fresh: list[Item] = []
    fresh_ids: list[str] = []
    ids: list[str] = []
    unused = iter(new_ids(distinct - len(known)))
    for it in valid:
        key = (it.type, it.value)
        sid = known.get(key)
        if sid is None:
            sid = next(unused)
            known[key] = sid
            fresh.append(it)
            fresh_ids.append(sid)
        ids.append(sid)

    details: dict[str, Any] = {
        "collection": collection_id,
        "count": len(fresh_ids),
        "duplicates": len(valid) - len(fresh_ids),
    }
    if len(fresh_ids) <= AUDIT_ID_LIST_LIMIT:
        details["ids"] = fresh_ids
    else:
        details["ids_sha256"] = ids_digest(fresh_ids)
    rec = auditlog.record(session, actor, "signals.submit", f"collection/{collection_id}", details, now=now)
    # A new signal's contributor claims it without a case when any of its items here carries none.
    plain = {sid for sid, it in zip(ids, valid, strict=True) if it.case_ref is None} & set(fresh_ids)
    _insert(session, collection_id, partner_id, rec.seq, now, fresh_ids, fresh, [sid in plain for sid in fresh_ids])
    _store_frames(session, fresh)
    _claim(session, partner_id, rec.seq, now, ids, valid, hub_secret, plain)
    body = {
        "collection": collection_id,
        "audit_seq": rec.seq,
        "accepted": len(fresh_ids),
        "duplicates": len(valid) - len(fresh_ids),
        "ids": ids,
    }
    return body, fresh_ids


def _write_all_new(
    session: Session,
    collection_id: str,
    partner_id: str,
    valid: Sequence[Item],
    distinct: int,
    actor: Actor,
    now: datetime,
    hub_secret: bytes | None,
) -> tuple[dict[str, Any], list[str]] | None:
    """Write the submission as if none of its values were active in the collection, which is the
    common case, without probing for them first; None if one was.

    The partial unique index of active values probes each new row anyway: a value already active violates it,
    and the savepoint takes back the audit entry and every row (the audit seq too: it is a row, not a sequence)
    before the caller looks the active values up and writes again. Half the index probes of a submission.
    """
    try:
        with session.begin_nested():
            return _write(session, collection_id, partner_id, valid, distinct, {}, actor, now, hub_secret)
    except IntegrityError as e:
        if getattr(getattr(e.orig, "diag", None), "constraint_name", None) != _ACTIVE_VALUE_INDEX:
            raise
        return None


def submit(
    session: Session,
    *,
    collection_id: str,
    partner_id: str,
    items: Any,
    actor: Actor,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
    hub_secret: bytes | None = None,
    now: datetime | None = None,
) -> Submitted:
    """Add signals to a collection (contributors only); all or nothing, one audit entry.

    `hub_secret` keys the digests of case references (needed when an item carries `case_ref`).

    With an idempotency key, a replay with the same request digest returns the first response and
    writes nothing; the same key with another digest is a 422. A replay is authorised as a new request
    is: a partner that lost its contributor access gets the 403 or 404, not the stored 201.
    """
    now = now or utcnow()
    collection = collections.contributable(session, collection_id, partner_id)
    if idempotency_key is not None:
        if (
            not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH
            or not (idempotency_key.isascii() and idempotency_key.isprintable())
            or request_sha256 is None
        ):
            raise ValidationError(
                "invalid Idempotency-Key",
                errors={"Idempotency-Key": [f"1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters"]},
            )
        replay = _replay(session, partner_id, idempotency_key, request_sha256)
        if replay is not None:
            return replay
    valid = validate(items, collection.types, collection.min_quality)

    # Serialize with other writers (the audit log's lock) so that deduplication cannot race.
    auditlog.next_seq(session)
    if idempotency_key is not None and request_sha256 is not None:
        replay = _replay(session, partner_id, idempotency_key, request_sha256)
        if replay is not None:
            return replay
    pairs = list(dict.fromkeys((it.type, it.value) for it in valid))
    session.execute(_NO_JIT_PG)
    denied = refused(session, collection.id, pairs)
    if denied:
        bad = {
            str(i): [_REFUSALS[denied[(it.type, it.value)]]]
            for i, it in enumerate(valid)
            if (it.type, it.value) in denied
        }
        raise ConflictError(f"{len(bad)} signals may not be submitted now", errors={"signals": bad})

    written = _write_all_new(session, collection.id, partner_id, valid, len(pairs), actor, now, hub_secret)
    if written is None:
        known = _existing(session, collection.id, pairs)
        written = _write(session, collection.id, partner_id, valid, len(pairs), known, actor, now, hub_secret)
    body, fresh_ids = written
    if idempotency_key is not None and request_sha256 is not None:
        session.add(
            IdempotencyKey(
                partner_id=partner_id,
                key=idempotency_key,
                request_sha256=request_sha256,
                status=201,
                response=json.dumps(body, separators=(",", ":")).encode(),
                created_at=now,
            )
        )
    session.flush()
    return Submitted(body, 201, new_ids=fresh_ids)


def _remove(
    session: Session, signal: Signal, status: SignalStatus, reason: str, audit_seq: int, now: datetime
) -> None:
    signal.status = status.value
    signal.removal_reason = reason
    signal.removed_audit_seq = audit_seq
    signal.removed_at = now
    if session.get(SignalSeq, signal.id) is None:
        # Never published: drop its pending add, and no batch ever mentions it.
        session.execute(
            delete(PendingChange).where(
                PendingChange.collection_id == signal.collection_id, PendingChange.signal_id == signal.id
            )
        )
    else:
        session.execute(
            insert(PendingChange).values(
                collection_id=signal.collection_id,
                signal_id=signal.id,
                op=Pending.REMOVE.value,
                audit_seq=audit_seq,
                reason=reason,
            )
        )


def is_pending(session: Session, signal_id: str) -> bool:
    """Whether a change of this signal waits for the sealer."""
    return session.scalar(select(PendingChange.op).where(PendingChange.signal_id == signal_id)) is not None


def _signal_in(session: Session, collection_id: str, signal_id: str) -> Signal:
    signal = session.scalars(
        select(Signal).where(Signal.id == signal_id, Signal.collection_id == collection_id).with_for_update()
    ).first()
    if signal is None:
        raise NotFoundError("no such signal")
    return signal


def retract(
    session: Session,
    *,
    collection_id: str,
    signal_id: str,
    partner_id: str | None,
    actor: Actor,
    reason: str = "withdrawn",
    now: datetime | None = None,
) -> Signal:
    """Withdraw a signal: by its contributor (`partner_id`) or by governance (`partner_id=None`). Audited.

    Another partner's signal is a 404, an already removed one a 409.
    """
    now = now or utcnow()
    if partner_id is not None:
        collections.contributable(session, collection_id, partner_id)
    auditlog.next_seq(session)  # the audit lock before the row lock: the order the sealer takes them in
    signal = _signal_in(session, collection_id, signal_id)
    if partner_id is not None and signal.contributor_id != partner_id:
        raise NotFoundError("no such signal")
    if signal.status != SignalStatus.ACTIVE.value:
        raise ConflictError(f"this signal is already {signal.status}")
    rec = auditlog.record(
        session,
        actor,
        "signal.retract",
        f"signal/{signal.id}",
        {"collection": signal.collection_id, "reason": reason},
        now=now,
    )
    _remove(session, signal, SignalStatus.RETRACTED, reason, rec.seq, now)
    session.flush()
    return signal


def retire(
    session: Session, *, collection_id: str, signal_id: str, actor: Actor, now: datetime | None = None
) -> Signal:
    """Governance retires a signal: removed from its collection and its (type, value) denied forever."""
    now = now or utcnow()
    auditlog.next_seq(session)  # the audit lock before the row lock: the order the sealer takes them in
    signal = _signal_in(session, collection_id, signal_id)
    if signal.status == SignalStatus.RETIRED.value:
        raise ConflictError("this signal is already retired")
    rec = auditlog.record(
        session, actor, "signal.retire", f"signal/{signal.id}", {"collection": signal.collection_id}, now=now
    )
    if signal.status == SignalStatus.ACTIVE.value:
        _remove(session, signal, SignalStatus.RETIRED, "retired", rec.seq, now)
    else:
        signal.status = SignalStatus.RETIRED.value
    if session.get(RetiredValue, (signal.type, signal.value)) is None:
        session.add(RetiredValue(type=signal.type, value=signal.value, retired_at=now, audit_seq=rec.seq))
    session.flush()
    return signal


@dataclass(frozen=True)
class Retired:
    """The outcome of retiring a (type, value): its audit entry and the signals the next batches remove."""

    type: str
    value: str
    audit_seq: int
    removed: list[str]


def retire_value(
    session: Session, *, kind: str, value: Any, actor: Actor, now: datetime | None = None
) -> Retired:
    """Governance retires a hash everywhere: deny-listed, and every active signal of it removed. Audited.

    Already on the deny list is a 409; a bad type or value a 422. The audit entry names the removed signal
    ids and the SHA-256 of the value, never the value itself (the log is public to auditors).
    """
    now = now or utcnow()
    if kind == VPDQ:  # the frames text in any accepted form; the deny list keeps its digest
        try:
            value, _ = parse_vpdq_value(value)
        except ValueError as e:
            raise ValidationError("invalid hash", errors={"value": [str(e)]}) from e
    elif kind not in HEX_LENGTHS or not isinstance(value, str) or not _HEX_OF[kind].fullmatch(value):
        raise ValidationError(
            "invalid hash",
            errors={"value": [f"type is one of {', '.join(FEED_TYPES)}, value its hex digest (vpdq: its frames)"]},
        )
    value = value.lower()
    auditlog.next_seq(session)  # the audit lock before the row locks: the order the sealer takes them in
    if session.get(RetiredValue, (kind, value)) is not None:
        raise ConflictError("this hash is already retired")
    found = active_of_value(session, kind, value)
    removed = sorted(s.id for s in found)
    rec = auditlog.record(
        session,
        actor,
        "signal.retire",
        f"hash/{kind}/{hashlib.sha256(value.encode()).hexdigest()}",
        {"type": kind, "removed": removed, "collections": sorted({s.collection_id for s in found})},
        now=now,
    )
    retire_found(session, kind, value, found, rec.seq, now)
    session.flush()
    return Retired(kind, value, rec.seq, removed)


def active_of_value(session: Session, kind: str, value: str) -> list[Signal]:
    """The active signals of a hash in every collection, locked (take the audit lock first)."""
    found: list[Signal] = []
    for cid in session.scalars(select(Collection.id).order_by(Collection.id)):
        # Per collection, so the lookup uses the (collection_id, type, value) index of active values.
        found.extend(
            session.scalars(
                select(Signal)
                .where(
                    Signal.collection_id == cid,
                    Signal.type == kind,
                    Signal.value == value,
                    Signal.status == SignalStatus.ACTIVE.value,
                )
                .with_for_update()
            )
        )
    return found


def retire_found(
    session: Session,
    kind: str,
    value: str,
    found: Sequence[Signal],
    audit_seq: int,
    now: datetime,
    *,
    also: Signal | None = None,
) -> None:
    """Retire a hash under an audit entry already written: remove `found` (from `active_of_value`) from the
    feed, mark `also` (a signal already out of the feed, e.g. quarantined) retired, and deny-list the value."""
    for signal in found:
        _remove(session, signal, SignalStatus.RETIRED, "retired", audit_seq, now)
    if also is not None and also.status != SignalStatus.RETIRED.value and also not in found:
        also.status = SignalStatus.RETIRED.value
        also.removal_reason = "retired"
        also.removed_audit_seq = audit_seq
        also.removed_at = now
    if session.get(RetiredValue, (kind, value)) is None:
        session.add(RetiredValue(type=kind, value=value, retired_at=now, audit_seq=audit_seq))


def withhold(session: Session, signal: Signal, audit_seq: int, now: datetime) -> None:
    """Quarantine an active signal under an audit entry already written: a signed remove, reason `quarantined`."""
    if signal.status != SignalStatus.ACTIVE.value:
        raise ConflictError(f"this signal is {signal.status}: nothing to withhold")
    _remove(session, signal, SignalStatus.QUARANTINED, "quarantined", audit_seq, now)


def republish(session: Session, signal: Signal, new_id: str, audit_seq: int, now: datetime) -> Signal:
    """End a quarantine: the hash is added again under `new_id` (a feed never adds one id twice) and its claims
    move to the new signal; the quarantined row becomes `released`."""
    if signal.status != SignalStatus.QUARANTINED.value:
        raise ConflictError(f"this signal is {signal.status}, not quarantined")
    signal.status = SignalStatus.RELEASED.value
    fresh = Signal(
        id=new_id,
        collection_id=signal.collection_id,
        type=signal.type,
        value=signal.value,
        quality=signal.quality,
        tags=signal.tags,
        contributor_id=signal.contributor_id,
        plain_claim=signal.plain_claim,
        status=SignalStatus.ACTIVE.value,
        added_audit_seq=audit_seq,
        created_at=now,
    )
    session.add(fresh)
    session.flush()
    session.add(
        PendingChange(
            collection_id=signal.collection_id,
            signal_id=new_id,
            op=Pending.ADD.value,
            audit_seq=audit_seq,
            type=signal.type,
            value=signal.value,
            quality=signal.quality,
            tags=signal.tags,
        )
    )
    session.execute(update(SignalClaim).where(SignalClaim.signal_id == signal.id).values(signal_id=new_id))
    return fresh


@dataclass(frozen=True)
class Withdrawn:
    """A withdrawn case: its audit entry, how many claims went, and the signals that left the feed."""

    audit_seq: int
    claims: int
    removed: list[str]


def withdraw_case(
    session: Session,
    *,
    partner_id: str,
    case_ref: Any,
    hub_secret: bytes,
    actor: Actor,
    now: datetime | None = None,
) -> Withdrawn:
    """Withdraw one of the partner's cases: its claims go, and each signal left without any claim (of any
    partner, any case) leaves the feed (a remove with reason `withdrawn`). Audited without the reference.

    A reference with no claim of this partner is a 404 (the same for another partner's case).
    """
    now = now or utcnow()
    if not isinstance(case_ref, str) or not 0 < len(case_ref) <= MAX_CASE_REF_LENGTH:
        raise ValidationError(
            "invalid case reference", errors={"case_ref": [f"1-{MAX_CASE_REF_LENGTH} characters"]}
        )
    digest = case_digest(hub_secret, partner_id, case_ref)
    auditlog.next_seq(session)  # the audit lock before the row locks: the order the sealer takes them in
    claimed = list(
        session.scalars(
            delete(SignalClaim)
            .where(SignalClaim.partner_id == partner_id, SignalClaim.case_digest == digest)
            .returning(SignalClaim.signal_id)
        )
    )
    if not claimed:
        raise NotFoundError("no such case")
    # Other partners' claims decide whether a signal stays: the partner was authenticated, the hub looks.
    rls.set_tenant(session, rls.SYSTEM)
    kept = set(
        session.scalars(select(SignalClaim.signal_id).where(SignalClaim.signal_id.in_(claimed)).distinct())
    )
    orphans = list(
        session.scalars(
            select(Signal)
            .where(
                Signal.id.in_(sorted(set(claimed) - kept)),
                Signal.plain_claim.is_(False),
                Signal.status.in_([SignalStatus.ACTIVE.value, SignalStatus.QUARANTINED.value]),
            )
            .order_by(Signal.id)
            .with_for_update()
        )
    )
    removed = [s.id for s in orphans]
    details: dict[str, Any] = {"claims": len(claimed), "count": len(removed)}
    if len(removed) <= AUDIT_ID_LIST_LIMIT:
        details["removed"] = removed
    else:
        details["removed_sha256"] = ids_digest(removed)
    rec = auditlog.record(session, actor, "case.withdraw", f"partner/{partner_id}", details, now=now)
    for signal in orphans:
        if signal.status == SignalStatus.QUARANTINED.value:
            # Already out of the feed: no second remove.
            signal.status = SignalStatus.RETRACTED.value
            signal.removal_reason = "withdrawn"
            signal.removed_audit_seq = rec.seq
            signal.removed_at = now
        else:
            _remove(session, signal, SignalStatus.RETRACTED, "withdrawn", rec.seq, now)
    session.flush()
    return Withdrawn(rec.seq, len(claimed), removed)


def pending_counts(session: Session) -> dict[str, int]:
    """Pending changes per collection id (for metrics and the sealer)."""
    rows = session.execute(
        select(PendingChange.collection_id, func.count()).group_by(PendingChange.collection_id)
    )
    return {c: n for c, n in rows}


def status_counts(session: Session) -> dict[str, int]:
    return {s: n for s, n in session.execute(select(Signal.status, func.count()).group_by(Signal.status))}
