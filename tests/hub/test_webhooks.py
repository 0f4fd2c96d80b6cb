"""Checkpoint webhooks: registration routes, and the delivery job pushing to the partner kit's real receiver."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry as AuditRow
from hub.webhooks import service as webhooks
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.webhook import WEBHOOK_PATH, WebhookVerifier, make_server
from tests.partners.realhub import FlaskTransport, RealHub


def test_register_get_and_delete(hub: RealHub) -> None:
    t = FlaskTransport(hub)
    assert t.request("GET", "/v1/webhooks", max_bytes=1 << 16).status == 404
    bad = t.request("PUT", "/v1/webhooks", json_body={"url": "http://partner.example/hook"}, max_bytes=1 << 16)
    assert bad.status == 422
    url = "https://1.1.1.1/hashfed/webhook"  # a public address: registering it needs no DNS
    ok = t.request("PUT", "/v1/webhooks", json_body={"url": url}, max_bytes=1 << 16)
    assert ok.status == 200 and ok.json()["url"] == url
    assert t.request("GET", "/v1/webhooks", max_bytes=1 << 16).json()["url"] == url
    assert t.request("DELETE", "/v1/webhooks", max_bytes=1 << 16).status == 204
    assert t.request("GET", "/v1/webhooks", max_bytes=1 << 16).status == 404


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [webhooks.backoff(n).total_seconds() for n in (1, 2, 3, 20)] == [30, 60, 120, 3600]


def test_delivery_reaches_the_kit_which_verifies_and_syncs(hub: RealHub, tmp_path: Path) -> None:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 5)
    hub.seal(cid)
    mirror = Mirror.open(f"sqlite:///{tmp_path / 'kit.db'}")
    syncer = Syncer(FlaskTransport(hub), mirror, hub.pin)
    assert syncer.sync().ok
    triggered: list[str] = []
    server = make_server("127.0.0.1", 0, WebhookVerifier(mirror, hub.pin), triggered.append)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{WEBHOOK_PATH}"
        with hub.session() as s:
            allow = hub.settings.webhook_allow  # 127.0.0.0/8: the receiver is on this machine, over plain http
            webhooks.register(s, hub.partner_id, url, Actor.operator(), datetime.now(UTC), allow=allow)
        first = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=hub.settings)
        # The kit already holds this checkpoint: delivered (200 "known"), nothing triggered.
        assert (first.queued, first.delivered) == (1, 1) and triggered == []
        hub.submit(cid, 3)
        hub.seal(cid)
        second = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=hub.settings)
        assert (second.queued, second.delivered) == (1, 1)
        assert triggered == [cid]
        assert syncer.sync([cid]).ok and len(list(mirror.active_signals(cid))) == 8
        again = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=hub.settings)
        assert (again.queued, again.delivered) == (0, 0)
    finally:
        server.shutdown()
        server.server_close()
        mirror.close()


def test_failed_deliveries_back_off_then_give_up_audited(hub: RealHub) -> None:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 2)
    hub.seal(cid)
    with hub.session() as s:
        webhooks.register(s, hub.partner_id, "https://1.1.1.1/hook", Actor.operator(), datetime.now(UTC), allow=())
    calls: list[str] = []

    def down(target: webhooks.Target, body: bytes, headers: dict[str, str]) -> int | None:
        calls.append(headers["Hashfed-Delivery"])
        assert body.startswith(b"hub.test/collections/")
        return 503

    t0 = datetime.now(UTC)
    assert webhooks.deliver_webhooks(hub.factory, t0, post=down).retried == 1
    assert webhooks.deliver_webhooks(hub.factory, t0 + timedelta(seconds=10), post=down).retried == 0
    assert webhooks.deliver_webhooks(hub.factory, t0 + timedelta(seconds=31), post=down).retried == 1
    done = webhooks.deliver_webhooks(hub.factory, t0 + timedelta(days=1, minutes=1), post=down)
    assert done.failed == 1 and len(set(calls)) == 1 and len(calls) == 3
    with hub.session() as s:
        actions = [json.loads(e)["action"] for e in s.scalars(select(AuditRow.entry))]
    assert "webhook.register" in actions and "webhook.failed" in actions
