"""A minimal feed client written only from docs/protocol.md, using the `audit` primitives to verify.

`http` is anything with `get(path, headers=...)` and `post(path, json=..., headers=...)` returning an object
with `status_code`, `data` (bytes) and `headers` (a Flask test client, or a thin wrapper over requests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.errors import VerificationError
from audit.keyset import TrustedKeySet, walk_keysets
from audit.merkle import CompactRange, b64decode, b64encode, leaf_hash, verify_consistency
from audit.note import SIG_COSIGNATURE, NoteVerifier, SignedCheckpoint, open_checkpoint
from audit.payloads import BatchPayload, CollectionDescriptor, Snapshot, open_payload, sha256_hex


class ProtocolError(Exception):
    """The hub sent something the protocol forbids."""


@dataclass
class Mirror:
    """What a partner keeps per collection, committed together after each page."""

    size: int = 0
    frontier: CompactRange = field(default_factory=CompactRange)
    prev: str | None = None
    checkpoint: SignedCheckpoint | None = None
    signals: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (type, value)


class FeedClient:
    def __init__(
        self, http: Any, token: str, pinned_sha256: str, *, max_age_s: int = 3600, skew_s: int = 300
    ):
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}
        self.pinned = pinned_sha256
        self.max_age_s = max_age_s
        self.skew_s = skew_s
        self.trusted: TrustedKeySet | None = None

    def _get(self, path: str, **headers: str) -> Any:
        response = self.http.get(path, headers={**self.headers, **headers})
        if response.status_code not in (200, 304):
            raise ProtocolError(f"GET {path}: {response.status_code}")
        return response

    # 2. key set: pin and walk
    def load_keys(self, now: datetime) -> TrustedKeySet:
        latest = json.loads(self._get("/v1/keys").data)
        version = json.loads(b64decode(latest["payload"], "payload"))["version"]
        envelopes = [self._get(f"/v1/keys/{v}").data for v in range(1, version + 1)]
        self.trusted = walk_keysets(envelopes, self.pinned, now)
        return self.trusted

    def _keyset(self) -> Any:
        if self.trusted is None:
            raise ProtocolError("load_keys first")
        return self.trusted.keyset

    # 3. descriptor
    def descriptor(self, c: str, now: datetime) -> CollectionDescriptor:
        assert self.trusted is not None
        return open_payload(
            self.trusted, self._get(f"/v1/collections/{c}").data, CollectionDescriptor, at=now
        )

    # 4. checkpoint
    def open_checkpoint(
        self, note: str, origin: str, hub: str, now: datetime, kept: SignedCheckpoint | None
    ) -> SignedCheckpoint:
        ks = self._keyset()
        cosigners = [
            NoteVerifier(f"{hub}/timestamp", k, SIG_COSIGNATURE) for k in ks.role_keys("timestamp").values()
        ]
        cp = open_checkpoint(note, origin, list(ks.role_keys("checkpoint").values()), cosigners)
        t = cp.cosignature_time
        if t is None:
            raise ProtocolError("checkpoint has no timestamp cosignature")
        if t < now.timestamp() - self.max_age_s or t > now.timestamp() + self.skew_s:
            raise ProtocolError("checkpoint cosignature is stale or from the future")
        if kept is not None:
            if kept.cosignature_time is not None and t < kept.cosignature_time:
                raise ProtocolError("cosignature older than the one kept")
            if cp.checkpoint.size < kept.checkpoint.size:
                raise ProtocolError("rollback")
            if cp.checkpoint.size == kept.checkpoint.size and cp.checkpoint.root != kept.checkpoint.root:
                raise ProtocolError("fork")
        return cp

    # 5-8. batches
    def sync(self, c: str, mirror: Mirror, hub: str, now: datetime, *, limit: int = 10) -> Mirror:
        origin = f"{hub}/collections/{c}"
        while True:
            page = json.loads(
                self._get(f"/v1/collections/{c}/batches?since_size={mirror.size}&limit={limit}").data
            )
            cp = self.open_checkpoint(page["checkpoint"], origin, hub, now, mirror.checkpoint)
            target = cp.checkpoint.size
            if page["size"] != target:
                raise ProtocolError("page size differs from its checkpoint")
            frontier = mirror.frontier.copy()
            prev, seq = mirror.prev, mirror.size
            applied: list[BatchPayload] = []
            for env in page["batches"]:
                raw = json.dumps(env).encode()
                batch = open_payload(self.trusted, raw, BatchPayload)  # type: ignore[arg-type]
                payload = b64decode(env["payload"], "payload")
                if batch.collection != c or batch.seq != seq + 1 or batch.prev != prev:
                    raise ProtocolError(f"batch chain broken at seq {seq + 1}")
                frontier.append(leaf_hash(payload))
                prev, seq = sha256_hex(payload), batch.seq
                applied.append(batch)
            proof = [b64decode(p, "proof") for p in page["proof"]]
            if frontier.size == target:
                if frontier.root() != cp.checkpoint.root:
                    raise ProtocolError("root differs from the checkpoint")
            else:
                try:
                    verify_consistency(frontier.size, target, frontier.root(), cp.checkpoint.root, proof)
                except VerificationError as e:
                    raise ProtocolError(f"consistency proof fails: {e}") from e
            for batch in applied:
                for a in batch.adds:
                    mirror.signals[a.id] = (a.type, a.value)
                for r in batch.removes:
                    mirror.signals.pop(r.id, None)
            mirror.size, mirror.frontier, mirror.prev, mirror.checkpoint = seq, frontier, prev, cp
            if mirror.size >= target:
                return mirror

    # 9. ack
    def ack(self, c: str, mirror: Mirror) -> int:
        body = {"size": mirror.size, "root": b64encode(mirror.frontier.root())}
        response = self.http.post(f"/v1/collections/{c}/ack", json=body, headers=self.headers)
        if response.status_code != 200:
            raise ProtocolError(f"ack: {response.status_code}")
        return int(json.loads(response.data)["audit_seq"])

    # 10. snapshot start
    def start_from_snapshot(self, c: str, hub: str, now: datetime) -> Mirror:
        assert self.trusted is not None
        snap = open_payload(self.trusted, self._get(f"/v1/collections/{c}/snapshot").data, Snapshot, at=now)
        if snap.collection != c:
            raise ProtocolError("snapshot of another collection")
        mirror = Mirror(
            size=snap.seq, frontier=snap.frontier.copy(), prev=snap.payload_sha256, checkpoint=None
        )
        for chunk in snap.chunks:
            data = self._get(f"/v1/collections/{c}/snapshot/chunks/{chunk.index}?seq={snap.seq}").data
            if sha256_hex(data) != chunk.sha256:
                raise ProtocolError(f"chunk {chunk.index} digest differs")
            body = json.loads(data)
            if body["collection"] != c or body["seq"] != snap.seq or body["index"] != chunk.index:
                raise ProtocolError("chunk header differs")
            if len(body["signals"]) != chunk.count:
                raise ProtocolError("chunk count differs")
            for a in body["signals"]:
                mirror.signals[a["id"]] = (a["type"], a["value"])
        # Extending the snapshot's frontier to the checkpoint's root proves S is a prefix of T.
        return self.sync(c, mirror, hub, now)
