"""The sync orchestrator: fetch with the `Transport`, verify with `partners.client.verify`, apply to the `Mirror`.

One collection at a time: key sets (walked forward from the pin), descriptor, checkpoint, then a snapshot
for a new partner, then pages of batches by `since_size`, each page applied in one transaction with the new
seq, frontier and checkpoint; then the ack. A refusal stops that collection, leaves its mirror state as it
was, and is journaled (fork evidence in `alerts`, a mass removal in `held`). A consistency proof that fails
is fetched again (`PROOF_RETRIES` times) and then refused as a failed verification: no alert, no halt.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from audit.canonical import fields, parse_json
from audit.dsse import Envelope
from audit.errors import VerificationError
from audit.keyset import TrustedKeySet
from audit.merkle import b64decode, b64encode
from audit.payloads import BatchAdd
from partners.client.errors import (
    ConsistencyProofError,
    EnvelopeError,
    ForkError,
    HaltedError,
    HeldBatchError,
    HubStatusError,
    KeySetRefusedError,
    MalformedResponseError,
    PartnerError,
    RefusedError,
    ResponseTooLargeError,
    SnapshotError,
)
from partners.client.mirror import Mirror
from partners.client.transport import Caps, Response, Transport, check_status
from partners.client.verify import (
    ChunkSignal,
    CollectionState,
    KeptCheckpoint,
    Policy,
    advance_keyset,
    check_latest_keyset,
    expected_origin,
    keyset_version,
    open_keysets,
    removal_held,
    sha256_hex,
    state_from_snapshot,
    verify_checkpoint,
    verify_chunk,
    verify_descriptor,
    verify_page,
    verify_snapshot,
    with_checkpoint,
)

log = logging.getLogger("hashfed.partner.sync")

# A page whose consistency proof fails is fetched again this many times before the sync of its collection is
# refused (a proof is unsigned: a broken one is a failed verification to retry, never evidence of a fork).
PROOF_RETRIES = 2

Clock = Callable[[], datetime]
ProgressFactory = Callable[[int, str], Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CollectionResult:
    """What one collection's sync did: seq before and after, batches and signals applied, or the error."""

    collection: str
    seq_before: int = 0
    seq_after: int = 0
    batches: int = 0
    snapshot_signals: int = 0
    error: PartnerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class SyncReport:
    """Results per collection; `ok` when every collection synced."""

    results: list[CollectionResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def errors(self) -> list[PartnerError]:
        return [r.error for r in self.results if r.error is not None]


# Response shapes (docs/protocol.md) ----------------------------------------------------------------------
# One wire shape per response: the kit parses exactly the keys the hub serves and refuses anything else as
# `MalformedResponseError` (a chunk: `SnapshotError`), so a shape the hub does not serve is never guessed at.

PAGE_KEYS = {"checkpoint", "size", "since_size", "batches", "proof"}
CHUNK_KEYS = {"collection", "seq", "index", "signals"}
# `GET /v1/collections` (hub/feed/schemas.py, CollectionSchema): informative; the kit reads only `id`.
COLLECTION_KEYS = {"id", "slug", "category", "signal_types", "pdq_threshold", "min_quality", "vpdq_percent",
                   "descriptor_version", "access"}

# A vpdq add's value is the canonical frames text (docs/formats.md, "vpdq"), as partners/matching/vpdq.py writes
# it: checked here by pattern, since a kit that only syncs has no [match] extra (numpy) to import that module.
_VPDQ_FRAME = r'"[0-9a-f]{64},(?:100|[1-9]?[0-9]),(?:0|[1-9][0-9]*)\.[0-9]{3}"'
_VPDQ_TEXT = re.compile(rf"\[{_VPDQ_FRAME}(?:,{_VPDQ_FRAME})*\]")
_VPDQ_SECONDS = re.compile(r',([0-9]+\.[0-9]{3})"')
MAX_VPDQ_FRAMES = 7_200
MAX_VPDQ_CHARS = MAX_VPDQ_FRAMES * 96


def vpdq_problem(value: str) -> str | None:
    """Why a vpdq entry's value is not canonical frames text (1..7,200 frames, seconds non-decreasing), or None."""
    if len(value) > MAX_VPDQ_CHARS or not _VPDQ_TEXT.fullmatch(value):
        return "its value is not canonical vpdq frames text"
    seconds = [float(t) for t in _VPDQ_SECONDS.findall(value)]
    if len(seconds) > MAX_VPDQ_FRAMES:
        return f"it lists more than {MAX_VPDQ_FRAMES} frames"
    if any(b < a for a, b in itertools.pairwise(seconds)):
        return "its frame timestamps decrease"
    return None


def check_entries(adds: Iterable[BatchAdd], what: str, error: type[RefusedError]) -> None:
    """Refuse signed adds the matcher could not index: a vpdq value that is not canonical frames text."""
    for a in adds:
        if a.type == "vpdq":
            problem = vpdq_problem(a.value)
            if problem is not None:
                raise error(f"{what}: vpdq add {a.id}: {problem}")


def _json(response: Response) -> Any:
    try:
        return parse_json(response.body)
    except VerificationError as e:
        raise MalformedResponseError(str(e)) from e


def _exact(data: Any, what: str, keys: set[str]) -> dict[str, Any]:
    """`data` as an object with exactly `keys`, or `MalformedResponseError`."""
    try:
        return fields(data, what, keys)
    except VerificationError as e:
        raise MalformedResponseError(str(e)) from e


def _envelope_bytes(body: bytes, what: str) -> bytes:
    """The response body is the DSSE envelope itself (a descriptor or a snapshot), nothing wrapped around it."""
    try:
        return Envelope.from_json(body).to_json()
    except VerificationError as e:
        raise MalformedResponseError(f"{what}: {e}") from e


def _proof(page: dict[str, Any]) -> list[bytes]:
    raw = page["proof"]
    if not isinstance(raw, list):
        raise MalformedResponseError("the consistency proof is a list of base64 hashes")
    try:
        return [b64decode(h, "proof hash") for h in raw]
    except VerificationError as e:
        raise MalformedResponseError(str(e)) from e


def _note(page: dict[str, Any]) -> str:
    note = page["checkpoint"]
    if not isinstance(note, str):
        raise MalformedResponseError("a page's checkpoint is the signed note as a string")
    return note


def parse_page(data: Any, since: int) -> dict[str, Any]:
    """A batches page: exactly `{"checkpoint", "size", "since_size", "batches", "proof"}` for `since`."""
    page = _exact(data, "a batches page", PAGE_KEYS)
    if page["since_size"] != since or type(page["since_size"]) is not int:
        raise MalformedResponseError(f"the page says since_size {page['since_size']!r}, asked {since}")
    if type(page["size"]) is not int:
        raise MalformedResponseError("a page's size is an integer")
    return page


def _envelopes(page: dict[str, Any], limit: int, checkpoint: KeptCheckpoint) -> list[Any]:
    """The page's envelopes: a list of at most `limit`; the page's `size` is its checkpoint's."""
    envelopes = page["batches"]
    if not isinstance(envelopes, list) or len(envelopes) > limit:
        raise MalformedResponseError("a page holds a list of at most `limit` envelopes")
    if page["size"] != checkpoint.size:
        raise MalformedResponseError(f"the page says size {page['size']}, its checkpoint {checkpoint.size}")
    return envelopes


def parse_collection_ids(data: Any) -> list[str]:
    """Collection ids from `GET /v1/collections`: a list of collection objects, as the hub serves it."""
    if not isinstance(data, list):
        raise MalformedResponseError("the collection list is a JSON list of collections")
    out = []
    for item in data:
        cid = _exact(item, "a listed collection", COLLECTION_KEYS)["id"]
        if not isinstance(cid, str) or not cid or "/" in cid:
            raise MalformedResponseError("a collection id is a non-empty string without '/'")
        out.append(cid)
    return out


def _claimed_seq(envelope: bytes) -> int | None:
    """The seq a snapshot envelope claims (unverified: only to pick the checkpoint to compare it with)."""
    try:
        data = parse_json(Envelope.from_json(envelope).payload)
    except VerificationError:
        return None
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if type(seq) is int else None


def parse_chunk(data: bytes, collection: str, seq: int, index: int) -> list[ChunkSignal]:
    """A snapshot chunk: exactly `{"collection", "seq", "index", "signals": [add...]}`, naming this chunk.

    Its digest was checked against the signed snapshot first; each signal is a batch add (`BatchAdd`).
    """
    try:
        obj = fields(parse_json(data), "a chunk", CHUNK_KEYS)
        adds = obj["signals"]
        if not isinstance(adds, list):
            raise SnapshotError("a chunk holds a list of signals")
        signals = [BatchAdd.from_dict(a) for a in adds]
    except VerificationError as e:
        raise SnapshotError(f"chunk {index}: {e}") from e
    for key, want in (("collection", collection), ("seq", seq), ("index", index)):
        if obj[key] != want or type(obj[key]) is not type(want):
            raise SnapshotError(f"chunk says {key} {obj[key]!r}, expected {want!r}")
    check_entries(signals, f"chunk {index}", SnapshotError)
    return [ChunkSignal(a.id, a.type, a.value, a.quality, a.tags) for a in signals]


# The orchestrator ----------------------------------------------------------------------------------------


class Syncer:
    """Syncs the collections a partner may read into its mirror, verifying everything first."""

    def __init__(
        self,
        transport: Transport,
        mirror: Mirror,
        pin: str,
        policy: Policy | None = None,
        *,
        caps: Caps | None = None,
        clock: Clock = utcnow,
        only: Sequence[str] = (),
        progress: ProgressFactory | None = None,
        ack: bool = True,
        on_synced: Callable[[SyncReport], None] | None = None,
    ) -> None:
        self.transport = transport
        self.mirror = mirror
        self.pin = pin.lower()
        self.policy = policy or Policy()
        self.caps = caps or Caps()
        self.clock = clock
        self.only = tuple(only)
        self.progress = progress
        self.ack = ack
        # Called after every sync run (the kit's matcher index catches up with the mirror here).
        self.on_synced = on_synced
        self._pending_keysets: list[tuple[int, str, bytes]] = []

    # HTTP helpers

    def _get(self, path: str, what: str, cap: int, params: dict[str, Any] | None = None) -> Response:
        return check_status(self.transport.request("GET", path, params=params, max_bytes=cap), what)

    # 1. key sets

    def refresh_keys(self) -> TrustedKeySet:
        """Re-verify stored key sets from the pin, walk forward one version at a time, check the latest."""
        stored = self.mirror.keyset_envelopes()
        latest = self._get("/v1/keys", "key set", self.caps.small).body
        pending: list[tuple[int, str, bytes]] = []
        if not stored:
            first = self._find_pinned(latest)
            trusted = open_keysets([first], self.pin)
            pending.append((trusted.keyset.version, trusted.keyset.sha256, first))
        else:
            trusted = open_keysets(stored, self.pin)
        while True:
            version = trusted.keyset.version + 1
            r = self.transport.request("GET", f"/v1/keys/{version}", max_bytes=self.caps.small)
            if r.status == 404:
                break
            body = check_status(r, f"key set v{version}").body
            advance_keyset(trusted, body)
            pending.append((version, trusted.keyset.sha256, body))
            log.info("key set advanced", extra={"event": "keyset", "version": version})
        check_latest_keyset(trusted, latest, self.clock())
        self._pending_keysets = pending
        return trusted

    def _find_pinned(self, latest: bytes) -> bytes:
        """The key set version whose payload digest is the pin (v1, or a later one got out of band)."""
        if sha256_hex(Envelope.from_json(latest).payload) == self.pin:
            return latest
        for version in range(1, keyset_version(latest) + 1):
            body = self._get(f"/v1/keys/{version}", f"key set v{version}", self.caps.small).body
            try:
                if sha256_hex(Envelope.from_json(body).payload) == self.pin:
                    return body
            except VerificationError as e:
                raise KeySetRefusedError(f"key set v{version}: {e}") from e
        raise KeySetRefusedError("no key set served by the hub matches the pinned digest")

    # 2.. per collection

    def collection_ids(self) -> list[str]:
        """Collections to sync: the configured ones, else every collection the hub lets this partner read."""
        if self.only:
            return list(self.only)
        return parse_collection_ids(_json(self._get("/v1/collections", "collections", self.caps.small)))

    def sync(self, collections: Sequence[str] | None = None) -> SyncReport:
        """Sync every collection (or the given ones); errors are per collection and journaled."""
        report = SyncReport()
        try:
            trusted = self.refresh_keys()
            ids = list(collections) if collections else self.collection_ids()
        except PartnerError as e:
            log.error("sync refused", extra={"event": "sync-error", "check": e.check, "error": str(e)})
            for c in list(collections or ()) or self.mirror.collection_ids() or ["*"]:
                self.mirror.record_attempt(c, f"{e.check}: {e}")
                report.results.append(CollectionResult(c, error=e))
            return report
        for c in ids:
            result = CollectionResult(c)
            try:
                self.sync_collection(trusted, c, result)
                self.mirror.record_attempt(c, None)
            except PartnerError as e:
                result.error = e
                if isinstance(e, ForkError):
                    self._fork_alert(c, e)
                self.mirror.record_attempt(c, f"{e.check}: {e}")
                level = logging.WARNING if isinstance(e, HeldBatchError) else logging.ERROR
                log.log(
                    level,
                    "collection not synced",
                    extra={"event": "sync-error", "collection": c, "check": e.check, "error": str(e)},
                )
            report.results.append(result)
        self._after_sync(report)
        return report

    def _after_sync(self, report: SyncReport) -> None:
        """Run the `on_synced` hook; its failure is logged and never undoes or fails the sync."""
        if self.on_synced is None:
            return
        try:
            self.on_synced(report)
        except Exception as e:  # the mirror is already committed; the hook's owner repairs itself later
            log.error("after-sync hook failed", extra={"event": "hook-error", "error": f"{e.__class__.__name__}: {e}"})

    def sync_collection(self, trusted: TrustedKeySet, c: str, result: CollectionResult | None = None) -> None:
        """Sync one collection up to the hub's latest checkpoint, or raise the check that failed."""
        result = result or CollectionResult(c)
        if self.mirror.open_alerts(c):
            raise HaltedError(f"{c}: halted by an unresolved fork alert (see `hashfed-partner status`)")
        state, active = self.mirror.state(c)
        result.seq_before = result.seq_after = state.size
        hub = trusted.keyset.hub
        origin = expected_origin(hub, c)
        now = self.clock()

        desc_body = _envelope_bytes(self._get(f"/v1/collections/{c}", "descriptor", self.caps.small).body, "descriptor")
        verify_descriptor(trusted, desc_body, c, now)

        note = self._get(f"/v1/collections/{c}/checkpoint", "checkpoint", self.caps.small).body
        cp = self._checkpoint(trusted, note, origin, state, state.checkpoint)

        applied_any = False
        if state.size == 0 and cp.size > 0:
            snap = self._snapshot(trusted, c, origin, state, cp, desc_body)
            if snap is not None:
                state, active, cp = snap
                result.snapshot_signals = active
                applied_any = True

        held = self.mirror.held(c)
        if held is not None and held.confirmed_at is None and held.seq == state.size + 1:
            raise HeldBatchError(f"{c}: batch {held.seq} is held; run `hashfed-partner confirm {c}` to apply it")
        confirmed = held.payload_sha256 if held is not None and held.confirmed_at else None
        bar = self.progress(cp.size - state.size, c) if self.progress and cp.size > state.size else None
        limit = self.policy.page_limit
        proof_failures = 0
        try:
            while state.size < cp.size:
                try:
                    data = self._page(c, state.size, limit)
                except ResponseTooLargeError:
                    if limit == 1:
                        raise  # one batch over the page cap: refused
                    limit = max(1, limit // 2)  # large batches: ask for fewer per page
                    continue
                page_cp = self._checkpoint(trusted, _note(data), origin, state, cp)
                envelopes = _envelopes(data, limit, page_cp)
                try:
                    page = verify_page(trusted, state, page_cp, envelopes, _proof(data), self.policy)
                except ConsistencyProofError as e:
                    proof_failures += 1
                    if proof_failures > PROOF_RETRIES:
                        raise
                    log.warning(
                        "consistency proof failed; fetching the page again",
                        extra={"event": "proof-retry", "collection": c, "check": e.check, "error": str(e)},
                    )
                    continue
                for b in page.batches:
                    check_entries(b.payload.adds, f"{c}: batch {b.payload.seq}", EnvelopeError)
                stop = removal_held(page, active, self.policy.max_removal_share, confirmed)
                count = len(page.batches) if stop is None else stop
                new = page.state_after(count)
                if count or new.checkpoint != state.checkpoint:
                    self.mirror.apply_batches(
                        state,
                        page.batches[:count],
                        new,
                        desc_body,
                        self._pending_keysets,
                        confirmed is not None,
                    )
                    self._pending_keysets = []
                applied_any = applied_any or count > 0
                active += sum(len(b.payload.adds) - len(b.payload.removes) for b in page.batches[:count])
                result.batches += count
                state, cp = new, page_cp
                result.seq_after = state.size
                if bar is not None:
                    bar.update(count)
                if stop is not None:
                    b = page.batches[stop]
                    self.mirror.hold(c, b.payload.seq, b.sha256, len(b.payload.removes), active)
                    log.warning(
                        "batch held",
                        extra={
                            "event": "held",
                            "collection": c,
                            "seq": b.payload.seq,
                            "removes": len(b.payload.removes),
                            "active": active,
                        },
                    )
                    raise HeldBatchError(
                        f"{c}: batch {b.payload.seq} removes {len(b.payload.removes)} of {active} signals "
                        f"(more than {self.policy.max_removal_share:.0%}); run `hashfed-partner confirm {c}`"
                    )
        finally:
            if bar is not None:
                bar.close()

        if state.checkpoint != cp:  # nothing new to apply, but a fresher cosignature to keep
            new = with_checkpoint(state, cp)
            self.mirror.store_checkpoint(state, new, desc_body, self._pending_keysets)
            self._pending_keysets = []
            state = new
        elif self._pending_keysets:
            self.mirror.store_keysets(self._pending_keysets)
            self._pending_keysets = []
        # Settings (thresholds, P) may change while the log does not grow: keep the verified descriptor.
        self.mirror.store_descriptor(c, desc_body)
        result.seq_after = state.size
        log.info(
            "collection synced",
            extra={
                "event": "synced",
                "collection": c,
                "seq": state.size,
                "batches": result.batches,
                "snapshot_signals": result.snapshot_signals,
            },
        )
        if applied_any and self.ack:
            self._ack(c, state)

    def _page(self, c: str, since: int, limit: int) -> dict[str, Any]:
        """One page of batches as JSON."""
        params = {"since_size": since, "limit": limit}
        return parse_page(_json(self._get(f"/v1/collections/{c}/batches", "batches", self.caps.page, params)), since)

    def _checkpoint(
        self,
        trusted: TrustedKeySet,
        note: str | bytes,
        origin: str,
        state: CollectionState,
        kept: KeptCheckpoint | None,
    ) -> KeptCheckpoint:
        """Verify a served checkpoint against the newest kept one."""
        return verify_checkpoint(trusted, note, origin, kept, self.clock(), self.policy)

    def _fork_alert(self, c: str, e: ForkError) -> None:
        self.mirror.alert(c, "fork", str(e), e.kept_note, e.served_note)
        log.critical("fork detected", extra={"event": "fork", "collection": c, "error": str(e)})

    def _snapshot(
        self,
        trusted: TrustedKeySet,
        c: str,
        origin: str,
        state: CollectionState,
        cp: KeptCheckpoint,
        desc_body: bytes,
    ) -> tuple[CollectionState, int, KeptCheckpoint] | None:
        """Start a new collection from the signed snapshot; None when the hub offers none (start at seq 1)."""
        r = self.transport.request("GET", f"/v1/collections/{c}/snapshot", max_bytes=self.caps.small * 4)
        if r.status == 404:
            return None
        envelope = _envelope_bytes(check_status(r, "snapshot").body, "snapshot")
        snap_seq = _claimed_seq(envelope)
        if snap_seq is not None and snap_seq > cp.size:
            # The hub sealed between the checkpoint and the snapshot: take its newer checkpoint (verified
            # against the one just taken) so the snapshot's root can be compared with a checkpoint.
            note = self._get(f"/v1/collections/{c}/checkpoint", "checkpoint", self.caps.small).body
            cp = self._checkpoint(trusted, note, origin, state, cp)
        snap = verify_snapshot(trusted, Envelope.from_json(envelope), c, cp, self.clock())
        new = state_from_snapshot(snap, cp)
        if snap.seq < cp.size:
            # No proof S -> T came with the snapshot: the next page, verified from the snapshot's frontier
            # up to the checkpoint, proves S is a prefix of the log before anything is stored.
            data = self._page(c, snap.seq, 1)
            page_cp = self._checkpoint(trusted, _note(data), origin, state, cp)
            verify_page(trusted, new, page_cp, _envelopes(data, 1, page_cp), _proof(data), self.policy)
        total = sum(ch.count for ch in snap.chunks)
        bar = self.progress(total, f"{c} snapshot") if self.progress else None

        def chunks() -> Iterator[list[ChunkSignal]]:
            for i in range(len(snap.chunks)):
                body = self._get(
                    f"/v1/collections/{c}/snapshot/chunks/{i}",
                    f"snapshot chunk {i}",
                    self.caps.chunk,
                    {"seq": snap.seq},
                ).body
                signals = verify_chunk(snap, i, body, lambda data, i=i: parse_chunk(data, c, snap.seq, i))
                if bar is not None:
                    bar.update(len(signals))
                yield signals

        try:
            stored = self.mirror.apply_snapshot(new, chunks(), desc_body, self._pending_keysets)
        finally:
            if bar is not None:
                bar.close()
        self._pending_keysets = []
        log.info(
            "snapshot applied",
            extra={"event": "snapshot", "collection": c, "seq": snap.seq, "signals": stored},
        )
        return new, stored, cp

    def _ack(self, c: str, state: CollectionState) -> None:
        """Tell the hub what this partner now holds (audited there); a failed ack does not undo the sync."""
        body = {"size": state.size, "root": b64encode(state.frontier.root())}
        try:
            check_status(
                self.transport.request("POST", f"/v1/collections/{c}/ack", json_body=body, max_bytes=self.caps.small),
                "ack",
            )
        except (HubStatusError, PartnerError) as e:
            log.warning("ack failed", extra={"event": "ack-error", "collection": c, "error": str(e)})
