"""Feed routes: descriptors, checkpoints, batches, snapshots, acks, submission, retraction, governance.

Routes are thin: the partner comes from the token (`current_principal()`), services do the work. A partner
that may not read a collection gets a 404 for all of it. Batch pages are streamed, each envelope rebuilt from
its stored payload and signatures (`models.envelope_of`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from flask import Response, request, stream_with_context

from audit.errors import VerificationError
from audit.merkle import b64decode, b64encode
from hub import rls
from hub.db import utcnow
from hub.errors import NotFoundError, ServiceUnavailableError, ValidationError
from hub.feed import batches, collections, signals, snapshots
from hub.feed.models import Access, Collection, CollectionHead
from hub.feed.schemas import (
    AckedSchema,
    AckSchema,
    ChunkArgs,
    CollectionCreateSchema,
    CollectionSchema,
    CollectionSettingsSchema,
    PageArgs,
    RetiredSchema,
    RetireSchema,
    RetractSchema,
    SubmitSchema,
    SubmittedSchema,
)
from hub.identity.auth import current_principal, require_scope
from hub.transparency import auditlog
from hub.transparency.keys import HubKeys, ensure_hub_secret, serving_keys
from hub.web import MAX_BIGINT, Blueprint, db, settings, state

blp = Blueprint("feed", __name__, description="Collections, the signed delta feed, and hash submission")

_JSON = "application/json"


def _keys() -> HubKeys:
    try:
        return serving_keys(state().services, settings(), db())  # reloaded after a rotation or revocation
    except Exception as e:
        raise ServiceUnavailableError("signing keys are not loaded") from e


def _hub_secret() -> bytes:
    """The hub secret for case reference digests, read once per app."""
    services = state().services
    if "feed_hub_secret" not in services:
        services["feed_hub_secret"] = ensure_hub_secret(settings().keys_path)
    secret: bytes = services["feed_hub_secret"]
    return secret


def _readable(c: str) -> Collection:
    return collections.readable(db(), c, current_principal().partner_id)


def _head(c: str) -> CollectionHead:
    head = batches.head(db(), c)
    if head is None:
        raise NotFoundError("this collection has no checkpoint yet; the scheduler signs one shortly")
    return head


def _summary(c: Collection, access: list[str]) -> dict[str, Any]:
    return {
        "id": c.id,
        "slug": c.slug,
        "category": c.category,
        "signal_types": list(c.types),
        "pdq_threshold": c.pdq_threshold,
        "min_quality": c.min_quality,
        "vpdq_percent": c.vpdq_percent,
        "descriptor_version": c.descriptor_version,
        "access": access,
    }


# --- feed --------------------------------------------------------------------------------------------------


@blp.route("/v1/collections")
@require_scope("feed:read")
@blp.response(200, CollectionSchema(many=True))
def list_collections() -> list[dict[str, Any]]:
    """Collections this partner may read or contribute to."""
    pid = current_principal().partner_id
    return [
        _summary(c, sorted(collections.access_of(db(), c.id, pid))) for c in collections.visible_to(db(), pid)
    ]


@blp.route("/v1/collections/<c>")
@require_scope("feed:read")
@blp.response(
    200, description="the signed descriptor, a DSSE envelope (application/vnd.hashfed.collection.v1+json)"
)
@blp.alt_response(404, description="no such collection, or not readable by this partner")
def descriptor(c: str) -> Response:
    """The collection's signed descriptor."""
    col = _readable(c)
    response = Response(bytes(col.descriptor), mimetype=_JSON)
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["ETag"] = f'"{hashlib.sha256(bytes(col.descriptor)).hexdigest()}"'
    return response


@blp.route("/v1/collections/<c>/checkpoint")
@require_scope("feed:read")
@blp.response(200, description="the latest checkpoint, a C2SP signed note with a cosignature (text/plain)")
@blp.alt_response(404, description="no such collection, or no checkpoint yet")
def checkpoint(c: str) -> Response:
    """The latest signed, cosigned checkpoint of the collection's log."""
    _readable(c)
    response = Response(_head(c).note, mimetype="text/plain")
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@blp.route("/v1/collections/<c>/batches")
@require_scope("feed:read")
@blp.arguments(PageArgs, location="query")
@blp.response(200, description="{checkpoint, size, since_size, batches: [envelope...], proof: [base64...]}")
@blp.alt_response(404, description="no such collection")
@blp.alt_response(422, description="since_size is beyond the latest checkpoint")
def batch_page(args: dict[str, Any], c: str) -> Response:
    """Envelopes of seq since_size+1 .. min(since_size+limit, T) and the consistency proof to size T."""
    _readable(c)
    head = _head(c)
    since, size = args["since_size"], head.size
    if since > size:
        raise ValidationError(
            f"since_size {since} is beyond the latest checkpoint ({size})",
            errors={"since_size": [f"at most {size}"]},
        )
    last = min(since + args["limit"], size)
    proof = [b64encode(h) for h in batches.consistency(db(), c, last, size)]
    note = head.note
    # The request's session is finished before a streamed body is read: the body reads with its own.
    factory = state().session_factory

    def body() -> Iterator[bytes]:
        yield b'{"checkpoint":' + json.dumps(note).encode()
        yield b',"size":%d,"since_size":%d,"batches":[' % (size, since)
        with factory() as session:
            for i, env in enumerate(batches.envelopes(session, c, since + 1, last)):
                yield (b"," if i else b"") + env
        yield b'],"proof":' + json.dumps(proof).encode() + b"}"

    response = Response(stream_with_context(body()), mimetype=_JSON)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@blp.route(f"/v1/collections/<c>/batches/<int(max={MAX_BIGINT}):seq>")
@require_scope("feed:read")
@blp.response(200, description="one immutable DSSE envelope (application/vnd.hashfed.batch.v1+json)")
@blp.alt_response(304, description="not modified (If-None-Match)")
@blp.alt_response(404, description="no such collection or batch")
def one_batch(c: str, seq: int) -> Response:
    """One batch by seq; ETag = SHA-256 of its payload."""
    _readable(c)
    row = batches.batch(db(), c, seq)
    etag = row.payload_sha256
    if etag in request.if_none_match:
        response = Response(status=304)
    else:
        response = Response(bytes(row.envelope), mimetype=_JSON)
    response.headers["ETag"] = f'"{etag}"'
    response.headers["Cache-Control"] = "private, immutable, max-age=31536000"
    return response


# Per process: the latest snapshot of each collection, and chunk boundaries of recent seqs (bounded).
_CHUNK_STARTS_KEPT = 64


def _snapshot(c: str, size: int) -> tuple[bytes, list[str]]:
    cache: dict[str, tuple[int, str, bytes, list[str]]] = state().services.setdefault("feed_snapshots", {})
    signer = _keys().signer("batch")
    held = cache.get(c)
    if held is None or held[:2] != (size, signer.key_id):  # a new seq, or a new batch key
        envelope, starts = snapshots.build(db(), c, size, signer)
        held = cache[c] = (size, signer.key_id, envelope, starts)
        _remember_starts(c, size, starts)
    return held[2], held[3]


def _remember_starts(c: str, seq: int, starts: list[str]) -> None:
    kept: dict[tuple[str, int], list[str]] = state().services.setdefault("feed_chunk_starts", {})
    kept[(c, seq)] = starts
    while len(kept) > _CHUNK_STARTS_KEPT:
        kept.pop(next(iter(kept)))


def _chunk_starts(c: str, seq: int) -> list[str]:
    kept: dict[tuple[str, int], list[str]] = state().services.setdefault("feed_chunk_starts", {})
    starts = kept.get((c, seq))
    if starts is None:
        starts = snapshots.chunk_starts(db(), c, seq)
        _remember_starts(c, seq, starts)
    return starts


@blp.route("/v1/collections/<c>/snapshot")
@require_scope("feed:read")
@blp.response(
    200, description="a signed snapshot (application/vnd.hashfed.snapshot.v1+json) at the latest seq"
)
@blp.alt_response(404, description="no such collection, or nothing sealed yet")
def snapshot(c: str) -> Response:
    """The signed snapshot at the latest seq, for a partner starting fresh."""
    _readable(c)
    size = _head(c).size
    envelope, _starts = _snapshot(c, size)
    response = Response(envelope, mimetype=_JSON)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@blp.route(f"/v1/collections/<c>/snapshot/chunks/<int(max={MAX_BIGINT}):index>")
@require_scope("feed:read")
@blp.arguments(ChunkArgs, location="query")
@blp.response(200, description='a chunk: canonical JSON {"collection", "seq", "index", "signals": [add...]}')
@blp.alt_response(404, description="no such collection, seq or chunk")
def snapshot_chunk(args: dict[str, Any], c: str, index: int) -> Response:
    """Chunk `index` of the snapshot at `seq` (default: the latest)."""
    _readable(c)
    size = _head(c).size
    seq = args.get("seq", size)
    if not 1 <= seq <= size:
        raise NotFoundError(f"no snapshot at seq {seq}")
    starts = _chunk_starts(c, seq)
    response = Response(snapshots.chunk(db(), c, seq, index, starts), mimetype=_JSON)
    response.headers["Cache-Control"] = "private, immutable, max-age=31536000"
    return response


@blp.route("/v1/collections/<c>/ack", methods=["POST"])
@require_scope("feed:read")
@blp.arguments(AckSchema)
@blp.response(200, AckedSchema)
@blp.alt_response(404, description="no such collection")
@blp.alt_response(422, description="size and root are not a checkpoint of this collection")
def ack(args: dict[str, Any], c: str) -> dict[str, int]:
    """Record (audited) that this partner applied the log up to a checkpoint."""
    _readable(c)
    principal = current_principal()
    try:
        root = b64decode(args["root"], "root")
    except VerificationError as e:
        raise ValidationError("root is not base64", errors={"root": ["base64 of 32 bytes"]}) from e
    if not batches.is_checkpoint(db(), c, args["size"], root):
        raise ValidationError(
            "no checkpoint of this collection has that size and root", errors={"root": ["not a checkpoint"]}
        )
    rec = auditlog.record(
        db(),
        principal.actor(),
        "feed.ack",
        f"collection/{c}",
        {"partner": principal.partner_id, "size": args["size"], "root": args["root"]},
    )
    batches.record_ack(db(), principal.partner_id, c, args["size"], rec.seq, utcnow())
    return {"audit_seq": rec.seq}


# --- submission --------------------------------------------------------------------------------------------


@blp.route("/v1/collections/<c>/signals", methods=["POST"])
@require_scope("hashes:write")
@blp.arguments(SubmitSchema)
@blp.response(201, SubmittedSchema)
@blp.alt_response(403, description="this partner may read but not contribute")
@blp.alt_response(404, description="no such collection")
@blp.alt_response(409, description="a (type, value) is retired, or quarantined in this collection")
@blp.alt_response(413, description="more than 10,000 signals")
@blp.alt_response(
    422, description="bad items (each named by index), or an Idempotency-Key reused with another body"
)
def submit(args: dict[str, Any], c: str) -> Response:
    """Submit up to 10,000 signals; all or nothing; `Idempotency-Key` makes a retry safe."""
    principal = current_principal()
    digest = hashlib.sha256(c.encode() + b"\n" + request.get_data()).hexdigest()
    result = signals.submit(
        db(),
        collection_id=c,
        partner_id=principal.partner_id,
        items=args["signals"],
        actor=principal.actor(),
        idempotency_key=request.headers.get("Idempotency-Key"),
        request_sha256=digest,
        hub_secret=_hub_secret(),
    )
    response = Response(json.dumps(result.body, separators=(",", ":")), status=result.status, mimetype=_JSON)
    if result.replayed:
        response.headers["Idempotency-Replayed"] = "true"
    return response


@blp.route("/v1/collections/<c>/signals/<signal_id>", methods=["DELETE"])
@require_scope("hashes:write")
@blp.arguments(RetractSchema, location="query")
@blp.response(204)
@blp.alt_response(404, description="no such collection or signal of this partner")
@blp.alt_response(409, description="already retracted or retired")
def retract(args: dict[str, Any], c: str, signal_id: str) -> None:
    """Withdraw one of this partner's signals; the next batch removes it."""
    principal = current_principal()
    signals.retract(
        db(),
        collection_id=c,
        signal_id=signal_id,
        partner_id=principal.partner_id,
        actor=principal.actor(),
        reason=args["reason"],
    )


# --- governance --------------------------------------------------------------------------------------------


def _as_governance() -> None:
    """Governance acts across partners: its requests see every partner's feed rows (RLS tenant SYSTEM)."""
    rls.set_tenant(db(), rls.SYSTEM)


@blp.route("/v1/governance/collections", methods=["POST"])
@require_scope("governance")
@blp.arguments(CollectionCreateSchema)
@blp.response(201, CollectionSchema)
@blp.alt_response(409, description="slug taken")
@blp.alt_response(422, description="invalid settings")
def create_collection(args: dict[str, Any]) -> dict[str, Any]:
    """Create a collection (audited; its descriptor is signed, its log gets a signed size-0 checkpoint)."""
    _as_governance()
    keys = _keys()
    c = collections.create_collection(
        db(),
        slug=args["slug"],
        owner_id=args["owner"],
        category=args["category"],
        signal_types=args["signal_types"],
        pdq_threshold=args["pdq_threshold"],
        min_quality=args["min_quality"],
        vpdq_percent=args["vpdq_percent"],
        actor=current_principal().actor(),
        hub_name=settings().hub_name,
        signer=keys.signer("collection"),
    )
    signers = batches.Signers(keys.signer("batch"), keys.signer("checkpoint"), keys.signer("timestamp"))
    now = utcnow().replace(microsecond=0)
    batches.ensure_head(db(), c.id, hub_name=settings().hub_name, signers=signers, now=now)
    return _summary(c, [])


@blp.route("/v1/governance/collections/<c>/members/<partner_id>/<access>", methods=["PUT", "DELETE"])
@require_scope("governance")
@blp.response(200, CollectionSchema)
@blp.alt_response(404, description="no such collection, partner or access")
def change_access(c: str, partner_id: str, access: str) -> dict[str, Any]:
    """Grant (PUT) or revoke (DELETE) read or contribute access; audited, descriptor re-signed."""
    if access not in {a.value for a in Access}:
        raise NotFoundError("access is reader or contributor")
    _as_governance()
    col = collections.set_access(
        db(),
        c,
        partner_id,
        Access(access),
        request.method == "PUT",
        actor=current_principal().actor(),
        hub_name=settings().hub_name,
        signer=_keys().signer("collection"),
    )
    return _summary(col, [])


@blp.route("/v1/governance/collections/<c>", methods=["PATCH"])
@require_scope("governance")
@blp.arguments(CollectionSettingsSchema)
@blp.response(200, CollectionSchema)
@blp.alt_response(404, description="no such collection")
@blp.alt_response(422, description="invalid settings")
def change_settings(args: dict[str, Any], c: str) -> dict[str, Any]:
    """Change a collection's matching settings (types, PDQ threshold, minimum quality, vPDQ percentage P);
    audited, descriptor re-signed."""
    _as_governance()
    col = collections.update_settings(
        db(),
        c,
        actor=current_principal().actor(),
        hub_name=settings().hub_name,
        signer=_keys().signer("collection"),
        signal_types=args.get("signal_types"),
        pdq_threshold=args.get("pdq_threshold"),
        min_quality=args.get("min_quality"),
        vpdq_percent=args.get("vpdq_percent"),
    )
    return _summary(col, [])


@blp.route("/v1/governance/collections/<c>/signals/<signal_id>", methods=["DELETE"])
@require_scope("governance")
@blp.arguments(RetractSchema, location="query")
@blp.response(204)
@blp.alt_response(404, description="no such signal")
@blp.alt_response(409, description="already removed")
def governance_retract(args: dict[str, Any], c: str, signal_id: str) -> None:
    """Governance withdraws a signal (e.g. for a victim who asked the intake service)."""
    _as_governance()
    signals.retract(
        db(),
        collection_id=c,
        signal_id=signal_id,
        partner_id=None,
        actor=current_principal().actor(),
        reason=args["reason"],
    )


@blp.route("/v1/governance/retired", methods=["POST"])
@require_scope("governance")
@blp.arguments(RetireSchema)
@blp.response(201, RetiredSchema)
@blp.alt_response(409, description="already retired")
@blp.alt_response(422, description="not a valid hash of that type")
def retire(args: dict[str, Any]) -> dict[str, Any]:
    """Retire a hash: deny-listed for good, and removed from every collection in its next batch (audited)."""
    _as_governance()
    done = signals.retire_value(db(), kind=args["type"], value=args["value"], actor=current_principal().actor())
    return {"type": done.type, "value": done.value, "audit_seq": done.audit_seq, "removed": done.removed}
