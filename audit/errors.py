"""The one exception hierarchy of `audit`: every verification failure is a `VerificationError`."""


class VerificationError(Exception):
    """Something the hub published does not verify."""


class FormatError(VerificationError):
    """Bytes or a document are malformed: wrong encoding, type, length or field."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not hold."""


class RootMismatchError(ProofError):
    """A root hash differs from the one recomputed or expected."""


class SignatureError(VerificationError):
    """A signature is invalid or no trusted key signed."""


class ThresholdError(SignatureError):
    """Fewer distinct trusted keys signed than the threshold requires."""


class PayloadTypeError(VerificationError):
    """An envelope carries another payload type than the one expected."""


class RoleError(VerificationError):
    """A key signed for a role it does not hold."""


class KeySetError(VerificationError):
    """A key set document is inconsistent or does not match its pin."""


class RotationError(KeySetError):
    """A key set version does not follow the previous one under the rotation rule."""


class ExpiredError(VerificationError):
    """A document or key is used outside its validity period."""


class RevokedKeyError(VerificationError):
    """A key was revoked at or before the time it is used for."""


class LogError(VerificationError):
    """A log export is truncated, reordered or otherwise inconsistent with its checkpoints."""
