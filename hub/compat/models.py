"""The facade's table: per-partner API keys, stored as keyed digests only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime


class ApiKey(Base):
    """A partner's key for the StopNCII facade: the same partner, scopes and row-level isolation as OAuth."""

    __tablename__ = "compat_api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    # HMAC-SHA256 of the key under the hub secret (hex); the plaintext is shown once and never stored.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    # Space-separated scopes, a subset of what the partner's kind may hold.
    scopes: Mapped[str] = mapped_column(Text)
    # Where SubmitHashes puts hashes; NULL: the one collection the partner may contribute to.
    collection_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())
