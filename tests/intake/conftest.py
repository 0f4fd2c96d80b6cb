"""A real hub (committed database, its WSGI app) with an intake partner, and the intake app in front of it."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask

from hub.feed import collections
from hub.feed.models import Access
from hub.identity import tenants
from hub.transparency.auditlog import Actor
from partners.client.errors import TransportError
from partners.client.transport import Response, Transport
from partners.intake.app import create_app
from partners.intake.config import IntakeSettings
from tests.conftest import _made_database
from tests.partners.realhub import HUB_NAME, RealHub

SIGNAL_TYPES = ["pdq", "md5", "sha256"]


class IntakeTransport(Transport):
    """The hub's WSGI app through Flask's test client, as the intake's OAuth client (scope hashes:write).
    `cut` makes every request fail as an unreachable hub would."""

    def __init__(self, hub: RealHub, client_id: str, secret: str) -> None:
        self.client = hub.app.test_client()
        self.basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self.token: str | None = None
        self.cut = False
        self.paths: list[str] = []

    def _token(self) -> str:
        if self.token is None:
            r = self.client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "hashes:write"},
                headers={"Authorization": f"Basic {self.basic}"},
            )
            assert r.status_code == 200, r.get_data(as_text=True)
            self.token = r.get_json()["access_token"]
        return self.token

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None, max_bytes: int
    ) -> Response:
        if self.cut:
            raise TransportError(f"{method} {path}: ConnectionError")
        self.paths.append(f"{method} {path}")
        r = self.client.open(
            path,
            method=method,
            query_string=dict(params or {}),
            json=json_body,
            headers={"Authorization": f"Bearer {self._token()}"},
        )
        return Response(r.status_code, r.get_data(), {k.lower(): v for k, v in r.headers.items()})


@dataclass
class IntakeWorld:
    hub: RealHub
    collection: str
    intake_partner: str
    client_id: str
    secret: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntakeWorld]:
    """One hub per module: a collection taking PDQ, MD5 and SHA-256, and an intake partner contributing to it."""
    with _made_database() as db:
        hub = RealHub.start(db.app_url, db.engine, tmp_path_factory.mktemp("hub") / "var")
        with hub.session() as s:
            keys = hub.keys(s)
            c = collections.create_collection(
                s,
                slug="ncii-intake",
                owner_id=hub.partner_id,
                category="ncii",
                signal_types=SIGNAL_TYPES,
                pdq_threshold=31,
                min_quality=50,
                actor=Actor.operator(),
                hub_name=HUB_NAME,
                signer=keys.signer("collection"),
            )
            intake = tenants.create_partner(s, "helpline", "intake", Actor.operator())
            issued = tenants.create_client(
                s, intake.id, "intake", ["hashes:write"], hub_secret=keys.hub_secret, actor=Actor.operator()
            )
            collections.set_access(
                s,
                c.id,
                intake.id,
                Access.CONTRIBUTOR,
                True,
                actor=Actor.operator(),
                hub_name=HUB_NAME,
                signer=keys.signer("collection"),
            )
            collection_id = c.id
        yield IntakeWorld(hub, collection_id, intake.id, issued.client.client_id, issued.secret or "")


class Clock:
    """An injected clock: seconds, moved by the test."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Intake:
    app: Flask
    transport: IntakeTransport
    clock: Clock
    settings: IntakeSettings


def make_intake(world: IntakeWorld, data_dir: Path, proxy_hops: int = 0, address_lookups: int = 20) -> Intake:
    """The intake app against the world's hub, with its own data folder and clock."""
    secret_file = data_dir / "secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(world.secret)
    secret_file.chmod(0o600)
    settings = IntakeSettings(
        hub_url="http://127.0.0.1:8000",
        client_id=world.client_id,
        secret_path=str(secret_file),
        keyset_sha256=world.hub.pin,
        collection=world.collection,
        data_dir=data_dir / "data",
        proxy_hops=proxy_hops,
        address_lookups=address_lookups,
    )
    transport = IntakeTransport(world.hub, world.client_id, world.secret)
    clock = Clock()
    # Real argon2id with small costs: the tests verify many PINs on a shared machine.
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    app = create_app(settings, transport=transport, clock=clock, hasher=hasher)
    return Intake(app, transport, clock, settings)


@pytest.fixture
def intake(world: IntakeWorld, tmp_path: Path) -> Intake:
    return make_intake(world, tmp_path)
