"""Cases: open one from a page's hashes, look one up with its number and PIN, withdraw one.

The intake keeps per case only: the number shown to the person, the random reference the hub knows the case
by, the PIN's argon2 hash, whether it was withdrawn and the count of hashes. Never the hashes themselves and
never an image. A look-up asks the hub where the hashes are (received, active, removed) and how many platforms
acknowledged them; a case the hub no longer knows was withdrawn (here, or by the hub's operator for us).
Look-ups are limited per case number (`max_pin_failures` wrong PINs lock it for `lock_s`) and per address.
"""

from __future__ import annotations

import math
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from partners.intake.config import IntakeSettings
from partners.intake.errors import CaseNotFoundError, InvalidHashesError, TooManyAttemptsError
from partners.intake.hubclient import HubClient

# Case numbers avoid letters people confuse (0/O, 1/I/L) so that one read aloud on a helpline call survives.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_NUMBER_LENGTH = 10
_PIN_DIGITS = 8
_HEX = {"pdq": re.compile(r"[0-9a-f]{64}"), "sha256": re.compile(r"[0-9a-f]{64}"), "md5": re.compile(r"[0-9a-f]{32}")}

# A case's statuses: the hub's (received, active, removed) and withdrawn, which the intake records itself.
RECEIVED, ACTIVE, REMOVED, WITHDRAWN = "received", "active", "removed", "withdrawn"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    number TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL UNIQUE,
    pin_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    hashes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    withdrawn_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lookups (address TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS lookups_address ON lookups (address, at);
"""


@dataclass(frozen=True)
class NewCase:
    """What the person is shown once: the case number and the PIN."""

    number: str
    pin: str
    hashes: int


@dataclass(frozen=True)
class CaseStatus:
    """What a look-up with number and PIN shows: `platforms` (partners whose acknowledged copy of the list
    holds every hash of the case) and `seq` (the batch that published them) once the case is active."""

    number: str
    status: str
    hashes: int
    platforms: int = 0
    seq: int | None = None


def format_number(raw: str) -> str:
    """A case number as typed (any case, spaces, dashes) in its stored form, e.g. ABCDE-FGH23."""
    plain = re.sub(r"[\s-]", "", raw).upper()
    return f"{plain[:5]}-{plain[5:]}" if len(plain) == _NUMBER_LENGTH else plain


def _plain_pin(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw)


def check_hashes(raw: Any, settings: IntakeSettings) -> list[dict[str, Any]]:
    """The page's hashes as hub items: `[{"type", "value", "quality"?}]`; a PDQ under the minimum quality
    is dropped (the hub refuses it; the file's SHA-256 still goes)."""
    if not isinstance(raw, list) or not 0 < len(raw) <= 3 * settings.max_files:
        raise InvalidHashesError(f"send between 1 and {3 * settings.max_files} hashes")
    items: list[dict[str, Any]] = []
    for i, h in enumerate(raw):
        if not isinstance(h, dict) or set(h) - {"type", "value", "quality"}:
            raise InvalidHashesError(f"hash {i}: an object with type, value and (PDQ only) quality")
        kind, value, quality = h.get("type"), h.get("value"), h.get("quality")
        if kind not in _HEX or not isinstance(value, str) or not _HEX[kind].fullmatch(value):
            raise InvalidHashesError(f"hash {i}: a pdq, sha256 or md5 value in lowercase hex")
        if kind == "pdq":
            if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
                raise InvalidHashesError(f"hash {i}: a PDQ needs its quality, 0 to 100")
            if quality < settings.min_quality or value == "0" * 64:
                continue
            items.append({"type": kind, "value": value, "quality": quality})
        elif quality is not None:
            raise InvalidHashesError(f"hash {i}: only a PDQ has a quality")
        else:
            items.append({"type": kind, "value": value})
    if not items:
        raise InvalidHashesError("nothing to send: every PDQ was below the minimum quality")
    return items


class CaseBook:
    """The intake's cases in its own SQLite file."""

    def __init__(
        self,
        settings: IntakeSettings,
        hub: HubClient,
        clock: Callable[[], float],
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        # Verified when a case number is unknown, so that an unknown number costs the same time as a wrong PIN.
        self._dummy = self.hasher.hash(secrets.token_hex(8))
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with closing(sqlite3.connect(settings.database_path)) as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        path: Path = self.settings.database_path
        with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def open_case(self, raw_hashes: Any) -> NewCase:
        """Submit the hashes to the hub as one new case; its number and PIN. Nothing is stored unless the
        hub accepted the case."""
        items = check_hashes(raw_hashes, self.settings)
        case_ref = f"intake-{secrets.token_urlsafe(24)}"
        accepted = self.hub.submit_case(case_ref, items)
        plain = "".join(secrets.choice(_ALPHABET) for _ in range(_NUMBER_LENGTH))
        number = format_number(plain)
        pin = "".join(secrets.choice("0123456789") for _ in range(_PIN_DIGITS))
        with self._db() as db:
            db.execute(
                "INSERT INTO cases (number, case_ref, pin_hash, status, hashes, created_at) VALUES (?,?,?,?,?,?)",
                (number, case_ref, self.hasher.hash(pin), RECEIVED, accepted, self.clock()),
            )
        return NewCase(number, f"{pin[:4]} {pin[4:]}", accepted)

    def look_up(self, number: str, pin: str, address: str) -> CaseStatus:
        """The case's status, if number and PIN match; counts against the address and the case number."""
        row = self._authenticate(format_number(number), _plain_pin(pin), address)
        if row["status"] == WITHDRAWN:
            return CaseStatus(row["number"], WITHDRAWN, row["hashes"])
        found = self.hub.case_status(row["case_ref"])
        if found is None:
            # No claim is left at the hub: the case was withdrawn there (by the hub's operator, for us).
            self._mark_withdrawn(row["number"])
            return CaseStatus(row["number"], WITHDRAWN, row["hashes"])
        status = found["status"] if found["status"] in (RECEIVED, ACTIVE, REMOVED) else RECEIVED
        seqs = [p.get("seq") for p in found.get("published", []) if isinstance(p, dict)]
        seq = max((q for q in seqs if isinstance(q, int)), default=None)
        platforms = found.get("platforms", 0)
        platforms = platforms if isinstance(platforms, int) and platforms >= 0 else 0
        return CaseStatus(row["number"], status, row["hashes"], platforms if status == ACTIVE else 0, seq)

    def withdraw(self, number: str, pin: str, address: str) -> CaseStatus:
        """Withdraw the case at the hub (its hashes leave the feed unless another case holds them)."""
        row = self._authenticate(format_number(number), _plain_pin(pin), address)
        if row["status"] != WITHDRAWN:
            self.hub.withdraw_case(row["case_ref"])
            self._mark_withdrawn(row["number"])
        return CaseStatus(row["number"], WITHDRAWN, row["hashes"])

    def _mark_withdrawn(self, number: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE cases SET status = ?, withdrawn_at = ? WHERE number = ? AND status <> ?",
                (WITHDRAWN, self.clock(), number, WITHDRAWN),
            )

    def _authenticate(self, number: str, pin: str, address: str) -> sqlite3.Row:
        now = self.clock()
        s = self.settings
        overrun = False
        with self._db() as db:
            db.row_factory = sqlite3.Row
            db.execute("DELETE FROM lookups WHERE at <= ?", (now - s.address_window_s,))
            (recent,) = db.execute("SELECT count(*) FROM lookups WHERE address = ?", (address,)).fetchone()
            if recent >= s.address_lookups:
                raise TooManyAttemptsError("too many look-ups from this address", s.address_window_s)
            db.execute("INSERT INTO lookups (address, at) VALUES (?, ?)", (address, now))
            row = db.execute("SELECT * FROM cases WHERE number = ?", (number,)).fetchone()
            if row is not None:
                if row["locked_until"] > now:
                    raise TooManyAttemptsError("this case number is locked", math.ceil(row["locked_until"] - now))
                # Counted before the PIN is checked, so that parallel guesses cannot outrun the limit.
                db.execute("UPDATE cases SET failures = failures + 1 WHERE number = ?", (number,))
                row = db.execute("SELECT * FROM cases WHERE number = ?", (number,)).fetchone()
                overrun = row["failures"] > s.max_pin_failures
                if overrun:
                    db.execute(
                        "UPDATE cases SET failures = 0, locked_until = ? WHERE number = ?", (now + s.lock_s, number)
                    )
        if row is not None and overrun:
            raise TooManyAttemptsError("this case number is locked", s.lock_s)
        if row is None:
            self._verify(self._dummy, pin)
            raise CaseNotFoundError("no case with this number and PIN")
        ok = self._verify(row["pin_hash"], pin)
        with self._db() as db:
            if ok:
                db.execute("UPDATE cases SET failures = 0 WHERE number = ?", (number,))
            elif row["failures"] >= s.max_pin_failures:
                db.execute("UPDATE cases SET failures = 0, locked_until = ? WHERE number = ?", (now + s.lock_s, number))
        if not ok:
            raise CaseNotFoundError("no case with this number and PIN")
        return row

    def _verify(self, pin_hash: str, pin: str) -> bool:
        try:
            return bool(self.hasher.verify(pin_hash, pin))
        except (VerificationError, InvalidHashError):
            return False
