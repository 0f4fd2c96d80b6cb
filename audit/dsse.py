"""DSSE envelopes (secure-systems-lab/dsse v1): PAE, signing and threshold verification with Ed25519."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.canonical import canonical_json, parse_json
from audit.errors import FormatError, PayloadTypeError, ThresholdError
from audit.merkle import b64decode, b64encode
from audit.signing import Signer, verify_ed25519


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: `DSSEv1 <len type> <type> <len payload> <payload>`."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    """One envelope signature: the signer's key id and the raw 64-byte Ed25519 signature."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope; `payload` holds the exact signed bytes."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: payload and signatures in standard base64."""
        return {
            "payloadType": self.payload_type,
            "payload": b64encode(self.payload),
            "signatures": [{"keyid": s.keyid, "sig": b64encode(s.sig)} for s in self.signatures],
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes of the envelope, as the hub serves and exports it."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Parse the JSON form strictly."""
        if not isinstance(data, dict) or set(data) != {"payloadType", "payload", "signatures"}:
            raise FormatError("an envelope has exactly payloadType, payload and signatures")
        if not isinstance(data["payloadType"], str) or not isinstance(data["signatures"], list):
            raise FormatError("envelope payloadType is a string and signatures a list")
        sigs = []
        for s in data["signatures"]:
            if not isinstance(s, dict) or set(s) != {"keyid", "sig"} or not isinstance(s["keyid"], str):
                raise FormatError("an envelope signature has exactly keyid and sig")
            sigs.append(Signature(s["keyid"], b64decode(s["sig"], "signature")))
        return cls(data["payloadType"], b64decode(data["payload"], "payload"), tuple(sigs))

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        """Parse envelope JSON bytes."""
        return cls.from_dict(parse_json(data))


def sign_envelope(payload_type: str, payload: bytes, signers: Sequence[Signer]) -> Envelope:
    """Sign `payload` under `payload_type` with each signer."""
    message = pae(payload_type, payload)
    sigs = tuple(Signature(s.key_id, s.sign(message)) for s in signers)
    return Envelope(payload_type, payload, sigs)


def verified_keyids(envelope: Envelope, keys: Mapping[str, bytes]) -> frozenset[str]:
    """Ids of the keys in `keys` (key id -> raw public key) with a valid signature; each counted once."""
    message = pae(envelope.payload_type, envelope.payload)
    return frozenset(
        s.keyid
        for s in envelope.signatures
        if s.keyid in keys and verify_ed25519(keys[s.keyid], s.sig, message)
    )


def verify_envelope(
    envelope: Envelope, payload_type: str, keys: Mapping[str, bytes], threshold: int
) -> bytes:
    """Check the payload type and that `threshold` distinct keys of `keys` signed; return the payload."""
    if envelope.payload_type != payload_type:
        raise PayloadTypeError(f"payload type {envelope.payload_type!r}, expected {payload_type!r}")
    if threshold < 1:
        raise ThresholdError("a threshold is at least 1")
    found = len(verified_keyids(envelope, keys))
    if found < threshold:
        raise ThresholdError(f"{found} of {threshold} required signatures for {payload_type}")
    return envelope.payload
