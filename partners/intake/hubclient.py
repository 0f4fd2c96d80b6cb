"""The intake's calls to the hub, over the kit's `Transport`: check the pinned key set, submit a case's
hashes, read a case's status, withdraw a case."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from audit.dsse import Envelope
from audit.errors import VerificationError
from partners.client.errors import PartnerError
from partners.client.transport import Caps, Transport, check_status
from partners.client.verify import check_latest_keyset, keyset_version, open_keysets, sha256_hex
from partners.intake.errors import HubUnavailableError

_CAPS = Caps()


class HubClient:
    """One intake's view of the hub."""

    def __init__(self, transport: Transport, collection: str) -> None:
        self.transport = transport
        self.collection = collection

    def check_keys(self, pin: str, now: datetime) -> int:
        """Walk the hub's key sets from the pinned one to the latest; its version. Proves the intake talks
        to the hub it was configured for before anyone's hashes are sent."""
        try:
            latest = self._get("/v1/keys", "key set")
            envelopes = [self._get(f"/v1/keys/{v}", f"key set v{v}") for v in range(1, keyset_version(latest) + 1)]
            pinned = [i for i, e in enumerate(envelopes) if sha256_hex(Envelope.from_json(e).payload) == pin]
            if not pinned:
                raise HubUnavailableError("no key set served by the hub matches the pin")
            trusted = open_keysets(envelopes[pinned[0] :], pin)
            check_latest_keyset(trusted, latest, now)
        except (PartnerError, VerificationError) as e:
            raise HubUnavailableError(str(e)) from e
        return trusted.keyset.version

    def submit_case(self, case_ref: str, hashes: list[dict[str, Any]]) -> int:
        """Submit the hashes as one case; the number of signals the hub accepted (new or already there)."""
        items = [{**h, "case_ref": case_ref} for h in hashes]
        body = self._call("POST", f"/v1/collections/{quote(self.collection, safe='')}/signals", {"signals": items})
        return len(body.get("ids", []))

    def case_status(self, case_ref: str) -> dict[str, Any] | None:
        """The hub's status of the case (`GET /v1/cases/{ref}`: status, hashes, pending, in_feed, published,
        platforms); None when the hub holds no claim under the reference any more (withdrawn)."""
        path = f"/v1/cases/{quote(case_ref, safe='')}"
        try:
            r = self.transport.request("GET", path, max_bytes=_CAPS.small)
            if r.status == 404:
                return None
            body = check_status(r, "case status").json()
        except PartnerError as e:
            raise HubUnavailableError(str(e)) from e
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise HubUnavailableError("the hub's case status is not an object with a status")
        return body

    def withdraw_case(self, case_ref: str) -> int:
        """Withdraw the case's claims at the hub; how many hashes left the feed. A case the hub no longer
        knows (404) was withdrawn already."""
        path = f"/v1/cases/{quote(case_ref, safe='')}/withdraw"
        try:
            r = self.transport.request("POST", path, max_bytes=_CAPS.small)
        except PartnerError as e:
            raise HubUnavailableError(str(e)) from e
        if r.status == 404:
            return 0
        try:
            return int(check_status(r, "withdraw").json().get("removed", 0))
        except PartnerError as e:
            raise HubUnavailableError(str(e)) from e

    def _get(self, path: str, what: str) -> bytes:
        return check_status(self.transport.request("GET", path, max_bytes=_CAPS.small), what).body

    def _call(self, method: str, path: str, body: Any) -> Any:
        try:
            r = self.transport.request(method, path, json_body=body, max_bytes=_CAPS.small)
            return check_status(r, "submit").json()
        except PartnerError as e:
            raise HubUnavailableError(str(e)) from e
