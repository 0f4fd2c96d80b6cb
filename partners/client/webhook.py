"""Push: a small HTTP receiver for the hub's checkpoint webhooks (stdlib `http.server`).

The webhook is self-authenticating, so no shared secret exists to leak: the body is the collection's signed
checkpoint note itself (`text/plain`), cosigned by the hub's `timestamp` key. The kit verifies it with the
keys it already trusts (checkpoint signature under the origin it computes, then freshness): the signed
cosignature time is the timestamp, and the replay window is `window_s` around now. A note not newer than
the kept one is acknowledged but triggers nothing; a valid note that forks from the kept one is kept as
evidence. Headers `Hashfed-Event: checkpoint` and `Hashfed-Delivery: <id>` are informational only.

`Hashfed-Event: dispute` announces a staff decision on a dispute this partner opened or contributed to. Its body,
`{"event": "dispute", "dispute": id}`, is not signed and is taken as a hint only: the receiver reads the dispute
from the hub with its own token (`on_dispute`), so a forged delivery can cause a read and nothing else.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from partners.client.errors import ForkError, KeySetRefusedError, RefusedError, WebhookError
from partners.client.mirror import Mirror
from partners.client.verify import Policy, expected_origin, open_keysets, verify_checkpoint

log = logging.getLogger("hashfed.partner.webhook")

MAX_BODY = 8192  # bytes: a checkpoint note with a few signatures is well under 1 KiB
WEBHOOK_PATH = "/hashfed/webhook"


@dataclass
class WebhookVerifier:
    """Verifies a delivery against the mirror's trusted key sets and kept checkpoints (read-only)."""

    mirror: Mirror
    pin: str
    window_s: int = 900  # seconds: a delivery's cosignature may be this old
    skew_s: int = 300
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def verify(self, body: bytes) -> tuple[str, bool]:
        """Return (collection, is_new); raise `WebhookError` (or `ForkError`, evidence kept) otherwise."""
        if len(body) > MAX_BODY:
            raise WebhookError(f"a webhook body is at most {MAX_BODY} bytes")
        envelopes = self.mirror.keyset_envelopes()
        if not envelopes:
            raise WebhookError("nothing synced yet: no trusted key set")
        try:
            trusted = open_keysets(envelopes, self.pin)
        except KeySetRefusedError as e:
            raise WebhookError(str(e)) from e
        origin_line = body.split(b"\n", 1)[0].decode("utf-8", "replace")
        known = {expected_origin(trusted.keyset.hub, c): c for c in self.mirror.collection_ids()}
        collection = known.get(origin_line)
        if collection is None:
            raise WebhookError("the note's origin is no collection this mirror holds")
        state, _ = self.mirror.state(collection)
        policy = Policy(max_age_s=self.window_s, skew_s=self.skew_s)
        try:
            cp = verify_checkpoint(trusted, body, origin_line, state.checkpoint, self.clock(), policy)
        except ForkError as e:
            self.mirror.alert(collection, "fork", f"webhook: {e}", e.kept_note, e.served_note)
            raise
        except RefusedError as e:
            raise WebhookError(f"{e.check}: {e}") from e
        kept = state.checkpoint
        is_new = kept is None or cp.size > kept.size or cp.cosigned_at > kept.cosigned_at
        return collection, is_new


def parse_dispute_event(body: bytes) -> str:
    """The dispute id of a `dispute` delivery: exactly `{"event": "dispute", "dispute": id}`, else a WebhookError."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise WebhookError("a dispute event is a JSON object") from e
    if not isinstance(data, dict) or set(data) != {"event", "dispute"} or data["event"] != "dispute":
        raise WebhookError('a dispute event is exactly {"event": "dispute", "dispute": id}')
    dispute = data["dispute"]
    if not isinstance(dispute, str) or not 0 < len(dispute) <= 36 or not dispute.isascii() or not dispute.isprintable():
        raise WebhookError("a dispute event names a dispute id")
    return dispute


def make_server(
    host: str,
    port: int,
    verifier: WebhookVerifier,
    on_checkpoint: Callable[[str], None],
    tls: ssl.SSLContext | None = None,
    on_dispute: Callable[[str], None] | None = None,
) -> ThreadingHTTPServer:
    """A threaded HTTP(S) server that verifies deliveries on `WEBHOOK_PATH` and calls `on_checkpoint`, or for a
    dispute event, `on_dispute` with the dispute's id (which the callback reads from the hub itself)."""
    lock = threading.Lock()  # verification reads the mirror; one delivery at a time is plenty

    class Handler(BaseHTTPRequestHandler):
        server_version = "hashfed-partner"

        def _reply(self, status: int, payload: dict[str, str]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path != WEBHOOK_PATH:
                self._reply(404, {"error": "not found"})
                return
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                self._reply(411, {"error": "Content-Length required"})
                return
            if int(length) > MAX_BODY:
                self._reply(413, {"error": "too large"})
                return
            body = self.rfile.read(int(length))
            delivery = self.headers.get("Hashfed-Delivery", "")
            if self.headers.get("Hashfed-Event") == "dispute":
                self._dispute(body, delivery)
                return
            try:
                with lock:
                    collection, is_new = verifier.verify(body)
            except (WebhookError, ForkError) as e:
                log.warning(
                    "webhook refused",
                    extra={
                        "event": "webhook-refused",
                        "delivery": delivery,
                        "check": e.check,
                        "error": str(e),
                    },
                )
                self._reply(400, {"error": e.check})
                return
            if is_new:
                on_checkpoint(collection)
            log.info(
                "webhook accepted",
                extra={"event": "webhook", "delivery": delivery, "collection": collection, "new": is_new},
            )
            self._reply(202 if is_new else 200, {"collection": collection, "status": "sync" if is_new else "known"})

        def _dispute(self, body: bytes, delivery: str) -> None:
            try:
                dispute = parse_dispute_event(body)
            except WebhookError as e:
                extra = {"event": "webhook-refused", "delivery": delivery, "error": str(e)}
                log.warning("webhook refused", extra=extra)
                self._reply(400, {"error": e.check})
                return
            log.info("dispute event", extra={"event": "webhook-dispute", "delivery": delivery, "dispute": dispute})
            if on_dispute is not None:
                on_dispute(dispute)
            self._reply(202, {"dispute": dispute, "status": "fetch"})

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    return server
