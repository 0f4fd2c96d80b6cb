"""A hub without a database, served through a `Transport`, for verifier and sync tests.

It signs exactly what the real hub signs (key sets, descriptors, batches, checkpoints with cosignatures,
snapshots) so attacks can be staged by editing what it serves. Its bytes come from the hub's own encoders
wherever the hub has one outside a database session or a Flask route: batch payloads
(`BatchPayload.to_bytes`, as the sealer) and envelopes (`hub.feed.batches.envelope_bytes`), snapshot chunks
(`hub.feed.snapshots.encode_chunk`), descriptors (`hub.feed.collections.descriptor_of`), origins and
cosigner names. The collection list and the batches page are assembled inside their Flask routes
(`hub/feed/routes.py`), and key sets and snapshot envelopes need the hub's database (`build_keyset`,
`snapshots.build`): those are built here with the same `audit` types, in the shapes docs/protocol.md gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from audit.canonical import canonical_json, format_time
from audit.dsse import Envelope, sign_envelope
from audit.keyset import KEYS_TYPE
from audit.merkle import CompactRange, b64encode, consistency_proof, leaf_hash
from audit.note import Checkpoint, cosign_note, sign_checkpoint
from audit.payloads import (
    BatchAdd,
    BatchPayload,
    BatchRemove,
    Snapshot,
    SnapshotChunk,
    sha256_hex,
)
from audit.signing import Ed25519Signer, Signer
from hub.feed import batches as hub_batches
from hub.feed import collections as hub_collections
from hub.feed import snapshots as hub_snapshots
from hub.feed.models import Collection
from partners.client.errors import ResponseTooLargeError
from partners.client.transport import Response, Transport

HUB = "hub.test"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seeded(n: int) -> Ed25519Signer:
    return Ed25519Signer.from_private_bytes(bytes([n]) * 32)


def pdq(i: int) -> str:
    return f"{i:064x}"


@dataclass
class FakeCollection:
    id: str
    payloads: list[bytes] = field(default_factory=list)
    envelopes: list[bytes] = field(default_factory=list)
    active: dict[str, BatchAdd] = field(default_factory=dict)
    next_id: int = 0


class FakeHub:
    """Key sets, collections, sealed batches and checkpoints, signed with seeded keys."""

    def __init__(self, now: datetime = T0 + timedelta(days=30)) -> None:
        self.now = now
        self.root = seeded(1)
        self.signers: dict[str, Signer] = {
            "batch": seeded(2),
            "checkpoint": seeded(3),
            "timestamp": seeded(4),
            "collection": seeded(5),
        }
        self.revoked: dict[str, datetime] = {}
        self.keysets: list[bytes] = []
        self.publish_keyset()
        self.collections: dict[str, FakeCollection] = {}
        self.chunk_size = 50_000

    # key sets

    def keyset_dict(self, version: int) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for role, s in self.signers.items():
            entry = keys.setdefault(
                s.key_id, {"public": b64encode(s.public_key), "roles": [], "valid_from": format_time(T0)}
            )
            entry["roles"].append(role)
            if s.key_id in self.revoked:
                entry["revoked_at"] = format_time(self.revoked[s.key_id])
        for kid, at in self.revoked.items():
            if kid in keys:
                keys[kid]["revoked_at"] = format_time(at)
        for kid, info in getattr(self, "_retired", {}).items():
            keys.setdefault(kid, info)
        return {
            "hub": HUB,
            "version": version,
            "expires": format_time(self.now + timedelta(days=300)),
            "root": {"keys": {self.root.key_id: b64encode(self.root.public_key)}, "threshold": 1},
            "keys": keys,
            "roles": {
                r: {"threshold": 1} for r in ("batch", "checkpoint", "timestamp", "audit", "export", "collection")
            },
        }

    def publish_keyset(self, signers: list[Signer] | None = None) -> bytes:
        env = sign_envelope(KEYS_TYPE, canonical_json(self.keyset_dict(len(self.keysets) + 1)), signers or [self.root])
        self.keysets.append(env.to_json())
        return self.keysets[-1]

    @property
    def pin(self) -> str:
        return sha256_hex(Envelope.from_json(self.keysets[0]).payload)

    def rotate(self, role: str, revoke_at: datetime | None = None) -> Signer:
        """Replace a role key with a new one (the old stays listed, revoked at `revoke_at` if given)."""
        old = self.signers[role]
        retired = getattr(self, "_retired", {})
        info = {"public": b64encode(old.public_key), "roles": [role], "valid_from": format_time(T0)}
        info["valid_until" if revoke_at is None else "revoked_at"] = format_time(revoke_at or self.now)
        retired[old.key_id] = info
        self._retired = retired
        self.signers[role] = seeded(20 + len(retired))
        self.publish_keyset()
        return self.signers[role]

    # collections and batches

    def add_collection(self, cid: str) -> FakeCollection:
        self.collections[cid] = FakeCollection(cid)
        return self.collections[cid]

    def descriptor(self, cid: str, **changes: Any) -> bytes:
        row = Collection(
            id=cid, slug=cid, category="ncii", signal_types="pdq,md5", pdq_threshold=31, min_quality=50
        )
        d = hub_collections.descriptor_of(row, HUB)
        payload = canonical_json({**d.to_dict(), **changes}) if changes else d.to_bytes()
        return sign_envelope(d.PAYLOAD_TYPE, payload, [self.signers["collection"]]).to_json()

    def seal(
        self,
        cid: str,
        adds: int = 0,
        removes: list[str] | None = None,
        *,
        sealed_at: datetime | None = None,
        signer: Signer | None = None,
        **changes: Any,
    ) -> BatchPayload:
        """Seal `adds` new PDQs of its own and the `removes`; `changes` edit the payload (an attack)."""
        col = self.collections[cid]
        new = []
        for _ in range(adds):
            col.next_id += 1
            new.append(BatchAdd(f"s{col.next_id}", "pdq", pdq(col.next_id), audit_seq=col.next_id, quality=90))
        return self.seal_values(cid, new, removes or [], sealed_at=sealed_at, signer=signer, **changes)

    def seal_values(
        self,
        cid: str,
        adds: list[BatchAdd],
        removes: list[str],
        *,
        sealed_at: datetime | None = None,
        signer: Signer | None = None,
        **changes: Any,
    ) -> BatchPayload:
        """Seal a batch of these adds and removes, encoded and signed as the hub's sealer does."""
        col = self.collections[cid]
        for a in adds:
            col.active[a.id] = a
        for sid in removes:
            col.active.pop(sid, None)
        payload = BatchPayload(
            cid,
            len(col.payloads) + 1,
            sha256_hex(col.payloads[-1]) if col.payloads else None,
            sealed_at or self.now - timedelta(hours=1),
            tuple(adds),
            tuple(BatchRemove(sid, "retired", audit_seq=1) for sid in removes),
        )
        raw = canonical_json({**payload.to_dict(), **changes}) if changes else payload.to_bytes()
        col.payloads.append(raw)
        col.envelopes.append(hub_batches.envelope_bytes(raw, signer or self.signers["batch"]))
        return payload

    def leaves(self, cid: str, size: int | None = None) -> list[bytes]:
        payloads = self.collections[cid].payloads
        return [leaf_hash(p) for p in payloads[: len(payloads) if size is None else size]]

    def checkpoint(
        self,
        cid: str,
        size: int | None = None,
        *,
        cosigned_at: datetime | None = None,
        root: bytes | None = None,
        origin: str | None = None,
        signer: Signer | None = None,
    ) -> str:
        leaves = self.leaves(cid, size)
        cr = CompactRange()
        cr.extend(leaves)
        origin = origin or hub_collections.origin(HUB, cid)
        note = sign_checkpoint(Checkpoint(origin, len(leaves), root or cr.root()), signer or self.signers["checkpoint"])
        t = int((cosigned_at or self.now - timedelta(minutes=1)).timestamp())
        return cosign_note(note, hub_batches.cosigner_name(HUB), self.signers["timestamp"], t)

    def proof(self, cid: str, size1: int, size2: int) -> list[str]:
        if size1 == 0:
            return []
        return [b64encode(h) for h in consistency_proof(size1, self.leaves(cid, size2))]

    # snapshot

    def snapshot(self, cid: str) -> tuple[bytes, list[bytes]]:
        col = self.collections[cid]
        size = len(col.payloads)
        cr = CompactRange()
        cr.extend(self.leaves(cid))
        signals = sorted(col.active.values(), key=lambda a: a.id)
        parts = [signals[i : i + self.chunk_size] for i in range(0, max(len(signals), 1), self.chunk_size)]
        chunks = [hub_snapshots.encode_chunk(cid, size, i, part) for i, part in enumerate(parts)]
        snap = Snapshot(
            cid,
            size,
            cr.root(),
            cr,
            sha256_hex(col.payloads[-1]),
            tuple(SnapshotChunk(i, sha256_hex(c), len(p)) for i, (c, p) in enumerate(zip(chunks, parts, strict=True))),
        )
        env = sign_envelope(Snapshot.PAYLOAD_TYPE, snap.to_bytes(), [self.signers["batch"]]).to_json()
        return env, chunks


Handler = Callable[[str, str, Mapping[str, Any], Any], Response | None]


class FakeTransport(Transport):
    """Serves a `FakeHub`; `override` can replace any response (an attacker in the middle)."""

    def __init__(self, hub: FakeHub, *, snapshots: bool = True) -> None:
        self.hub = hub
        self.snapshots = snapshots
        self.override: Handler | None = None
        self.log: list[str] = []
        self.acks: list[tuple[str, Any]] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        max_bytes: int,
    ) -> Response:
        params = dict(params or {})
        self.log.append(f"{method} {path}" + (f"?{urlencode(params)}" if params else ""))
        response = None
        if self.override is not None:
            response = self.override(method, path, params, json_body)
        if response is None:
            response = self.serve(method, path, params, json_body)
        if len(response.body) > max_bytes:
            raise ResponseTooLargeError(f"{path}: more than {max_bytes} bytes")
        return response

    def serve(self, method: str, path: str, params: Mapping[str, Any], body: Any) -> Response:
        hub = self.hub
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "keys"]:
            if len(parts) == 2:
                return ok(hub.keysets[-1])
            v = int(parts[2])
            return ok(hub.keysets[v - 1]) if 1 <= v <= len(hub.keysets) else not_found()
        if parts == ["v1", "collections"]:
            return ok(json.dumps([collection_summary(c) for c in hub.collections]).encode())
        cid = parts[2]
        if cid not in hub.collections:
            return not_found()
        rest = parts[3:]
        if not rest:
            return ok(hub.descriptor(cid))
        if rest == ["checkpoint"]:
            return ok(hub.checkpoint(cid).encode(), "text/plain")
        if rest == ["batches"]:
            since, limit = int(params["since_size"]), int(params["limit"])
            col = hub.collections[cid]
            size = len(col.payloads)
            end = min(since + limit, size)
            # As hub/feed/routes.py (`batch_page`) streams it: the envelopes' bytes as stored, in one object.
            return ok(
                b'{"checkpoint":%s,"size":%d,"since_size":%d,"batches":[%s],"proof":%s}'
                % (
                    json.dumps(hub.checkpoint(cid)).encode(),
                    size,
                    since,
                    b",".join(col.envelopes[since:end]),
                    json.dumps(hub.proof(cid, end, size)).encode(),
                )
            )
        if rest[0] == "snapshot":
            if not self.snapshots:
                return not_found()
            env, chunks = hub.snapshot(cid)
            if len(rest) == 1:
                return ok(env)
            index = int(rest[2])
            return ok(chunks[index]) if index < len(chunks) else not_found()
        if rest == ["ack"] and method == "POST":
            self.acks.append((cid, body))
            return ok(json.dumps({"audit_seq": len(self.acks)}).encode())
        return not_found()


def collection_summary(cid: str) -> dict[str, Any]:
    """One item of `GET /v1/collections`, with the keys hub/feed/routes.py's `_summary` gives it."""
    return {
        "id": cid,
        "slug": cid,
        "category": "ncii",
        "signal_types": ["pdq", "md5"],
        "pdq_threshold": 31,
        "min_quality": 50,
        "vpdq_percent": 80,
        "descriptor_version": 1,
        "access": ["reader"],
    }


def ok(body: bytes, ctype: str = "application/json") -> Response:
    return Response(200, body, {"content-type": ctype})


def not_found() -> Response:
    return Response(404, b'{"code": 404, "status": "Not Found", "message": "not found"}', {})
