"""Helpers for the key rotation and revocation tests: a real hub, kits syncing from it, the operator's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from audit.keyset import TrustedKeySet
from hub.feed import batches
from hub.transparency import keys
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.transport import Transport
from partners.client.verify import Policy
from tests.partners.realhub import FlaskTransport, RealHub


def new_mirror(tmp_path: Path, mirrors: list[Mirror], name: str) -> Mirror:
    m = Mirror.open(f"sqlite:///{tmp_path / f'{name}.db'}")
    mirrors.append(m)
    return m


def sync(hub: RealHub, mirror: Mirror, transport: Transport | None = None) -> Any:
    return Syncer(transport or FlaskTransport(hub), mirror, hub.pin, Policy(page_limit=3)).sync()


def operator(hub: RealHub, group: Any, *args: str) -> str:
    """Run `hashfed keys|audit ...` against the hub's settings; returns its output, failing on an error."""
    result = CliRunner().invoke(group, list(args), obj=hub.settings)
    assert result.exit_code == 0, result.output
    return result.output


def root_key(hub: RealHub) -> str:
    return str(keys.default_root_path(hub.settings.keys_path))


def key_of(hub: RealHub, role: str) -> str:
    with hub.session() as s:
        row = keys.active_key(s, role)
        assert row is not None
        return row.key_id


def trusted(hub: RealHub) -> TrustedKeySet:
    with hub.session() as s:
        envelopes = keys.all_envelopes(s)
    walked = TrustedKeySet(envelopes[0], hub.pin)
    for env in envelopes[1:]:
        walked.update(env)
    return walked


def head_root(hub: RealHub, cid: str) -> bytes:
    with hub.session() as s:
        head = batches.head(s, cid)
        assert head is not None
        return bytes(head.root)


def seeded_collection(hub: RealHub, n: int = 30) -> str:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, n)
    hub.seal(cid, max_entries=10)
    return cid
