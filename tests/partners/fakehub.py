"""A hub built from `audit` primitives alone, served through a `Transport`, for verifier and sync tests.

It signs exactly what the real hub signs (key sets, descriptors, batches, checkpoints with cosignatures,
snapshots) so attacks can be staged by editing what it serves.
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
    CollectionDescriptor,
    Snapshot,
    SnapshotChunk,
    sha256_hex,
)
from audit.signing import Ed25519Signer, Signer
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
    active: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        d = CollectionDescriptor(cid, cid, "ncii", f"{HUB}/collections/{cid}", ("pdq", "md5"), 31, 50)
        data = {**d.to_dict(), **changes}
        return sign_envelope(d.PAYLOAD_TYPE, canonical_json(data), [self.signers["collection"]]).to_json()

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
        col = self.collections[cid]
        seq = len(col.payloads) + 1
        new = []
        for _ in range(adds):
            col.next_id += 1
            sid = f"s{col.next_id}"
            new.append(BatchAdd(sid, "pdq", pdq(col.next_id), audit_seq=col.next_id, quality=90))
            col.active[sid] = {"id": sid, "type": "pdq", "value": pdq(col.next_id), "quality": 90}
        gone = []
        for sid in removes or []:
            col.active.pop(sid, None)
            gone.append(BatchRemove(sid, "retired", audit_seq=1))
        payload = BatchPayload(
            cid,
            seq,
            sha256_hex(col.payloads[-1]) if col.payloads else None,
            sealed_at or self.now - timedelta(hours=1),
            tuple(new),
            tuple(gone),
        )
        data = {**payload.to_dict(), **changes}
        raw = canonical_json(data)
        col.payloads.append(raw)
        col.envelopes.append(sign_envelope(BatchPayload.PAYLOAD_TYPE, raw, [signer or self.signers["batch"]]).to_json())
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
        origin = origin or f"{HUB}/collections/{cid}"
        note = sign_checkpoint(Checkpoint(origin, len(leaves), root or cr.root()), signer or self.signers["checkpoint"])
        t = int((cosigned_at or self.now - timedelta(minutes=1)).timestamp())
        return cosign_note(note, f"{HUB}/timestamp", self.signers["timestamp"], t)

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
        signals = sorted(col.active.values(), key=lambda s: s["id"])
        chunks = [
            canonical_json({"signals": signals[i : i + self.chunk_size]})
            for i in range(0, max(len(signals), 1), self.chunk_size)
        ]
        snap = Snapshot(
            cid,
            size,
            cr.root(),
            cr,
            sha256_hex(col.payloads[-1]),
            tuple(SnapshotChunk(i, sha256_hex(c), len(json.loads(c)["signals"])) for i, c in enumerate(chunks)),
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
            from partners.client.errors import ResponseTooLargeError

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
            return ok(json.dumps({"collections": [{"id": c} for c in hub.collections]}).encode())
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
            return ok(
                json.dumps(
                    {
                        "checkpoint": hub.checkpoint(cid),
                        "batches": [json.loads(e) for e in col.envelopes[since:end]],
                        "consistency": hub.proof(cid, end, size),
                    }
                ).encode()
            )
        if rest[0] == "snapshot":
            if not self.snapshots:
                return not_found()
            env, chunks = hub.snapshot(cid)
            if len(rest) == 1:
                return ok(
                    json.dumps(
                        {"snapshot": json.loads(env), "checkpoint": hub.checkpoint(cid), "consistency": []}
                    ).encode()
                )
            return ok(chunks[int(rest[2])])
        if rest == ["ack"] and method == "POST":
            self.acks.append((cid, body))
            return Response(200, b"{}", {})
        return not_found()


def ok(body: bytes, ctype: str = "application/json") -> Response:
    return Response(200, body, {"content-type": ctype})


def not_found() -> Response:
    return Response(404, b'{"code": 404, "status": "Not Found", "message": "not found"}', {})
