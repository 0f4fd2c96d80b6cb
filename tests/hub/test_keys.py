"""Keys: `hashfed init`, key set publication and rotation, the public endpoints, keyed digests."""

from __future__ import annotations

import hashlib
import stat
from datetime import timedelta

import pytest
from click.testing import CliRunner

from audit.dsse import Envelope
from audit.errors import RotationError
from audit.keyset import TrustedKeySet
from audit.signing import Ed25519Signer
from hub.cli.main import main
from hub.errors import ConflictError
from hub.transparency import keys
from tests.hub.auditkit import T0, make_hub_keys


def test_keyed_digest_is_an_hmac_that_hides_the_value(session, settings):
    hub_keys, _root = make_hub_keys(session, settings)
    a = hub_keys.keyed_digest("d41d8cd98f00b204e9800998ecf8427e")
    assert len(a) == 64 and a == keys.keyed_digest(hub_keys.hub_secret, b"d41d8cd98f00b204e9800998ecf8427e")
    assert a != keys.keyed_digest(b"\x01" * 32, "d41d8cd98f00b204e9800998ecf8427e")
    assert a != hashlib.sha256(b"d41d8cd98f00b204e9800998ecf8427e").hexdigest()


def test_key_files_are_private(session, settings):
    make_hub_keys(session, settings)
    assert stat.S_IMODE(settings.keys_path.stat().st_mode) == 0o700
    for path in settings.keys_path.glob("*.pem"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_next_version_needs_the_current_root_key(session, settings):
    _hub_keys, root = make_hub_keys(session, settings)
    with pytest.raises(ConflictError, match="would not verify"):
        keys.publish_keyset(session, settings.hub_name, [Ed25519Signer.generate()], T0)
    v2 = keys.publish_keyset(session, settings.hub_name, [root], T0)
    trusted = TrustedKeySet(
        keys.keyset_record(session, 1).envelope, keys.keyset_record(session, 1).payload_sha256
    )
    assert trusted.update(v2.envelope).version == 2


def test_root_rotation_needs_old_and_new_root(session, settings):
    _hub_keys, root = make_hub_keys(session, settings)
    new_root = Ed25519Signer.generate()
    with pytest.raises(ConflictError):
        keys.publish_keyset(session, settings.hub_name, [new_root], T0, new_roots=[new_root.public_key])
    v2 = keys.publish_keyset(
        session, settings.hub_name, [root, new_root], T0, new_roots=[new_root.public_key]
    )
    trusted = TrustedKeySet(keys.keyset_record(session, 1).envelope)
    trusted.update(v2.envelope)
    v3 = keys.publish_keyset(session, settings.hub_name, [new_root], T0)
    trusted.update(v3.envelope)
    stale = TrustedKeySet(keys.keyset_record(session, 1).envelope)
    with pytest.raises(RotationError):
        stale.update(v3.envelope)  # versions are walked one by one


def test_key_endpoints_are_public(client, session, settings, time_machine):
    time_machine.move_to(T0 + timedelta(days=1), tick=False)  # the fixture key set is made at T0
    assert client.get("/v1/keys").status_code == 404
    make_hub_keys(session, settings)
    session.commit()
    r = client.get("/v1/keys")
    assert r.status_code == 200 and r.mimetype == "application/json"
    env = Envelope.from_json(r.data)
    assert env.payload_type == "application/vnd.hashfed.keys.v1+json"
    assert r.headers["ETag"] == f'"{hashlib.sha256(env.payload).hexdigest()}"'
    assert client.get("/v1/keys/1").data == r.data
    assert client.get("/v1/keys/2").status_code == 404
    assert client.get("/v1/keys/abc").status_code == 404
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["keys"] == "ok"


def test_readiness_fails_when_a_role_key_file_is_missing(client, session, settings):
    make_hub_keys(session, settings)
    session.commit()
    keys.role_key_path(settings.keys_path, "batch").unlink()
    r = client.get("/readyz")
    assert r.status_code == 503 and "batch.pem" in r.json["reason"]


def test_readiness_warns_30_days_before_the_key_set_expires(session, settings):
    hub_keys, _root = make_hub_keys(session, settings)
    expires = hub_keys.keyset().expires
    assert keys.expiry_problem(hub_keys.keyset(), expires - keys.EXPIRY_WARNING * 2) == (None, None)
    problem, warning = keys.expiry_problem(hub_keys.keyset(), expires - keys.EXPIRY_WARNING)
    assert problem is None and warning and "expires" in warning
    problem, _ = keys.expiry_problem(hub_keys.keyset(), expires)
    assert problem and "expired" in problem


def test_init_keys_rotate_checkpoint_prove_export_verify(tmp_path):
    env = {"HASHFED_VAR_DIR": str(tmp_path / "var"), "HASHFED_HUB_NAME": "hub.test",
           "HASHFED_BASE_URL": "https://hub.test"}
    runner = CliRunner()
    out = runner.invoke(main, ["init"], env=env)
    assert out.exit_code == 0, out.output
    assert "WARNING: kept on this host" in out.output
    pin = out.output.split("(partners pin this): ")[1].split()[0]
    assert runner.invoke(main, ["keys", "show", "--pin"], env=env).output == pin + "\n"
    again = runner.invoke(main, ["init"], env=env)
    assert again.exit_code == 0 and pin in again.output, again.output

    root = tmp_path / "var" / "keys" / "root" / "root.pem"
    rotated = runner.invoke(main, ["keys", "rotate", "audit", "--root", str(root)], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert "key set v2" in rotated.output
    stranger = tmp_path / "stranger.pem"
    assert runner.invoke(main, ["keys", "init-root", "--out", str(stranger)], env=env).exit_code == 0
    refused = runner.invoke(main, ["keys", "publish", "--root", str(stranger)], env=env)
    assert refused.exit_code != 0 and "would not verify" in refused.output
    published = runner.invoke(main, ["keys", "publish", "--root", str(root)], env=env)
    assert published.exit_code == 0 and "key set v3" in published.output, published.output

    cp = runner.invoke(main, ["audit", "checkpoint"], env=env)
    assert cp.exit_code == 0 and cp.output.startswith("hub.test/audit\n"), cp.output
    size = int(cp.output.split("\n")[1])
    entries = runner.invoke(main, ["audit", "entries", "--start", "0"], env=env)
    assert entries.exit_code == 0 and '"action":"keys.rotate"' in entries.output
    proved = runner.invoke(main, ["audit", "prove-inclusion", "--seq", "0", "--size", str(size)], env=env)
    assert proved.exit_code == 0 and '"proof"' in proved.output, proved.output
    proved = runner.invoke(main, ["audit", "prove-consistency", "--from", "1", "--to", str(size)], env=env)
    assert proved.exit_code == 0 and '"root2"' in proved.output, proved.output
    bad = runner.invoke(main, ["audit", "prove-inclusion", "--seq", "9", "--size", "99"], env=env)
    assert bad.exit_code != 0 and "beyond the latest audit checkpoint" in bad.output

    exported = runner.invoke(main, ["audit", "export", "--to", str(tmp_path / "export")], env=env)
    assert exported.exit_code == 0, exported.output
    from audit.export import verify_export

    report = verify_export(tmp_path / "export", pin)
    assert report.ok, report.verdict
    assert report.keyset_version == 3
