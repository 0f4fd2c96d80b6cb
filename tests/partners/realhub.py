"""A real hub for the kit's integration tests and benchmark: a committed database, the hub's own services
for set-up (keys, partner, client, collections, signals, sealing), and its WSGI app behind a `Transport`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub import rls
from hub.app import create_app
from hub.cli.audit import init_keys
from hub.config import Settings
from hub.db import make_session_factory
from hub.feed import batches, collections, signals
from hub.identity import tenants
from hub.proxies import parse_networks
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys, keyset_record, latest_record
from partners.client.errors import ResponseTooLargeError
from partners.client.transport import Response, Transport

HUB_NAME = "hub.test"
BASE_URL = "http://127.0.0.1:8000"
LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])  # HASHFED_WEBHOOK_ALLOW of a test deployment


def pdq(i: int) -> str:
    """A distinct, non-zero PDQ hex value per integer."""
    return f"{i + 1:064x}"


@dataclass
class RealHub:
    """The hub under test, set up through its services; `app` serves it."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    app: Flask
    partner_id: str = ""
    client_id: str = ""
    secret: str = ""
    counter: int = 0
    ids: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def start(cls, database_url: str, engine: Engine, var: Path, base_url: str = BASE_URL) -> RealHub:
        settings = Settings(
            var_dir=var,
            database_url=database_url,
            base_url=base_url,
            hub_name=HUB_NAME,
            webhook_allow=LOOPBACK,  # the kit's webhook receiver listens on this machine
        )
        init_keys(settings)
        factory = make_session_factory(engine)
        hub = cls(settings, engine, factory, create_app(settings, engine=engine, session_factory=factory))
        with hub.session() as s:
            p = tenants.create_partner(s, "acme", "platform", Actor.operator())
            issued = tenants.create_client(
                s,
                p.id,
                "sync",
                ["feed:read", "hashes:write"],
                hub_secret=hub.keys(s).hub_secret,
                actor=Actor.operator(),
            )
            hub.partner_id, hub.client_id = p.id, issued.client.client_id
            hub.secret = issued.secret or ""
        return hub

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.factory.begin() as s:
            rls.set_tenant(s, rls.SYSTEM)
            yield s

    def keys(self, s: Session) -> HubKeys:
        return HubKeys.load(self.settings, s)

    @property
    def pin(self) -> str:
        with self.session() as s:
            return keyset_record(s, 1).payload_sha256

    def latest_keyset(self) -> bytes:
        with self.session() as s:
            row = latest_record(s)
            return bytes(row.envelope) if row else b""

    def signers(self, s: Session) -> batches.Signers:
        k = self.keys(s)
        return batches.Signers(k.signer("batch"), k.signer("checkpoint"), k.signer("timestamp"))

    def publish_keyset(self) -> None:
        """Sign the next key set version with the local root key (the embedded default keeps one)."""
        from hub.transparency import keys

        root = keys.load_signer(keys.default_root_path(self.settings.keys_path))
        with self.session() as s:
            keys.publish_keyset(s, HUB_NAME, [root], datetime.now(UTC))

    def add_jwt_client(self, public_jwk: dict[str, Any]) -> str:
        """A private_key_jwt client of the same partner; returns its client id."""
        with self.session() as s:
            issued = tenants.create_client(
                s,
                self.partner_id,
                "sync-jwt",
                ["feed:read"],
                hub_secret=self.keys(s).hub_secret,
                actor=Actor.operator(),
                jwks={"keys": [public_jwk]},
            )
            return issued.client.client_id

    def create_collection(self, slug: str) -> str:
        with self.session() as s:
            c = collections.create_collection(
                s,
                slug=slug,
                owner_id=self.partner_id,
                category="ncii",
                signal_types=["pdq", "md5"],
                pdq_threshold=31,
                min_quality=50,
                actor=Actor.operator(),
                hub_name=HUB_NAME,
                signer=self.keys(s).signer("collection"),
            )
            self.ids[c.id] = []
            return c.id

    def submit(self, cid: str, n: int, per_request: int = 10_000) -> None:
        for start in range(0, n, per_request):
            items = [
                {"type": "pdq", "value": pdq(self.counter + i), "quality": 90}
                for i in range(min(per_request, n - start))
            ]
            self.counter += len(items)
            with self.session() as s:
                done = signals.submit(
                    s, collection_id=cid, partner_id=self.partner_id, items=items, actor=Actor.operator()
                )
                self.ids[cid].extend(done.new_ids)

    def retract(self, cid: str, count: int) -> None:
        with self.session() as s:
            for sid in self.ids[cid][:count]:
                signals.retract(s, collection_id=cid, signal_id=sid, partner_id=None, actor=Actor.operator())
        del self.ids[cid][:count]

    def seal(self, cid: str, now: datetime | None = None, max_entries: int | None = None) -> None:
        with self.session() as s:
            batches.seal_collection(
                s,
                cid,
                hub_name=HUB_NAME,
                signers=self.signers(s),
                max_entries=max_entries or self.settings.max_batch_entries,
                now=now or datetime.now(UTC),
            )

    def cosign(self, cid: str, now: datetime) -> None:
        with self.session() as s:
            batches.cosign(s, cid, hub_name=HUB_NAME, signers=self.signers(s), now=now)


class FlaskTransport(Transport):
    """The hub's WSGI app through Flask's test client, with an OAuth token fetched by client_secret_basic."""

    def __init__(self, hub: RealHub) -> None:
        self.hub = hub
        self.client = hub.app.test_client()
        self.token: str | None = None

    def _token(self) -> str:
        if self.token is None:
            basic = base64.b64encode(f"{self.hub.client_id}:{self.hub.secret}".encode()).decode()
            r = self.client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "feed:read"},
                headers={"Authorization": f"Basic {basic}"},
            )
            assert r.status_code == 200, r.get_data(as_text=True)
            self.token = r.get_json()["access_token"]
        return self.token

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        max_bytes: int,
    ) -> Response:
        r = self.client.open(
            path,
            method=method,
            query_string=dict(params or {}),
            json=json_body,
            headers={"Authorization": f"Bearer {self._token()}"},
        )
        body = r.get_data()
        if len(body) > max_bytes:
            raise ResponseTooLargeError(f"{path}: more than {max_bytes} bytes")
        return Response(r.status_code, body, {k.lower(): v for k, v in r.headers.items()})
