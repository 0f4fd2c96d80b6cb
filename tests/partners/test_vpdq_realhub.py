"""vPDQ end to end: a video hashed here is submitted to a real hub, sealed, synced into a kit's mirror and
matched by `hashfed-partner match` with the P of the collection's signed descriptor."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.canonical import canonical_json, parse_canonical
from audit.dsse import Envelope
from hub.feed import collections, signals
from hub.transparency.auditlog import Actor
from partners.cli.main import main
from partners.client import config as cfg
from partners.client import errors
from partners.client.mirror import Mirror
from partners.client.sync import Syncer, vpdq_problem
from partners.client.transport import Response, Transport
from partners.client.verify import Policy
from partners.matching.hashing import hash_file
from partners.matching.vpdq import format_vpdq, is_canonical_vpdq, parse_vpdq
from tests.conftest import Database
from tests.matching.videos import make_video
from tests.partners.fakehub import FakeHub, FakeTransport
from tests.partners.realhub import HUB_NAME, FlaskTransport, RealHub


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "original": make_video(d / "original.mp4", [1, 2, 3, 4]),
        "reencoded": make_video(d / "small.mp4", [1, 2, 3, 4], size=(160, 120), bit_rate=150_000),
        "other": make_video(d / "other.mp4", [5, 6, 7, 8]),
        "clip": make_video(d / "clip.mp4", [1, 2]),  # the first half
    }


@pytest.fixture
def hub(fresh_database: Database, tmp_path: Path) -> RealHub:
    return RealHub.start(fresh_database.app_url, fresh_database.engine, tmp_path / "var")


def video_collection(hub: RealHub) -> str:
    with hub.session() as s:
        c = collections.create_collection(
            s,
            slug="videos",
            owner_id=hub.partner_id,
            category="ncii",
            signal_types=["pdq", "video_md5", "vpdq"],
            pdq_threshold=31,
            min_quality=50,
            actor=Actor.operator(),
            hub_name=HUB_NAME,
            signer=hub.keys(s).signer("collection"),
        )
        return c.id


def set_percent(hub: RealHub, cid: str, percent: int) -> None:
    with hub.session() as s:
        collections.update_settings(
            s, cid, actor=Actor.operator(), hub_name=HUB_NAME, signer=hub.keys(s).signer("collection"),
            vpdq_percent=percent,
        )


def kit_home(hub: RealHub, tmp_path: Path) -> Path:
    home = tmp_path / "kit"
    secret = tmp_path / "secret"
    secret.write_text(hub.secret)
    secret.chmod(0o600)
    cfg.save(home, cfg.PartnerConfig(hub_url="https://hub.test", client_id=hub.client_id, keyset_sha256=hub.pin,
                                     secret_path=str(secret)))
    return home


def sync(hub: RealHub, home: Path, transport: Transport | None = None) -> None:
    mirror = Mirror.open(cfg.load(home).mirror(home))
    try:
        report = Syncer(transport or FlaskTransport(hub), mirror, hub.pin, Policy(max_removal_share=1.0)).sync()
        if report.errors():
            raise report.errors()[0]
    finally:
        mirror.close()


def match(home: Path, *paths: Path) -> dict[str, list[dict]]:
    r = CliRunner().invoke(main, ["--home", str(home), "match", "--json", *map(str, paths)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    return {Path(row["query"]).stem: row["matches"] for row in rows if row.get("type") == "vpdq"}


def test_a_video_goes_from_the_hub_to_the_kit_and_matches_with_the_signed_p(
    hub: RealHub, tmp_path: Path, videos: dict[str, Path]
) -> None:
    cid = video_collection(hub)
    original = hash_file(videos["original"])
    assert original.vpdq is not None
    # Submitted in python-threatexchange's spaced form; the hub keeps and signs the canonical text.
    spaced = json.dumps([f"{f.pdq.upper()},{f.quality},{f.timestamp}" for f in parse_vpdq(original.vpdq)])
    with hub.session() as s:
        [sid] = signals.submit(
            s, collection_id=cid, partner_id=hub.partner_id, items=[{"type": "vpdq", "value": spaced}],
            actor=Actor.operator(),
        ).new_ids
    hub.seal(cid)
    home = kit_home(hub, tmp_path)
    sync(hub, home)

    mirror = Mirror.open(cfg.load(home).mirror(home))
    try:
        [held] = [s for s in mirror.active_signals() if s.signal_id == sid]
        assert held.type == "vpdq" and held.value == format_vpdq(parse_vpdq(original.vpdq))
        assert mirror.descriptor(cid).vpdq_match_percent == 80
    finally:
        mirror.close()

    found = match(home, videos["original"], videos["reencoded"], videos["other"], videos["clip"])
    assert [(m["signal"], m["match"]) for m in found["original"]] == [(sid, True)]
    assert [(m["signal"], m["match"]) for m in found["small"]] == [(sid, True)]  # re-encoded and resized
    assert found["other"] == []
    # The first half: every one of its frames is in the stored video, about half of the stored video's unique
    # frames are in it (4 of 7: two of its frames are one hash), short of P = 80.
    [clip] = found["clip"]
    assert clip["query_percent"] == 100.0 and 50 <= clip["stored_percent"] < 80 and clip["match"] is False

    # P = 50 in a newly signed descriptor: the kit takes it on its next sync, and the clip matches.
    set_percent(hub, cid, 50)
    sync(hub, home)
    assert [(m["signal"], m["match"]) for m in match(home, videos["clip"])["clip"]] == [(sid, True)]

    # A retraction and a new video arrive in a batch (the first sync took a snapshot) and reach the index.
    other = hash_file(videos["other"]).vpdq
    with hub.session() as s:
        signals.retract(s, collection_id=cid, signal_id=sid, partner_id=None, actor=Actor.operator())
        [new] = signals.submit(
            s, collection_id=cid, partner_id=hub.partner_id, items=[{"type": "vpdq", "value": other}],
            actor=Actor.operator(),
        ).new_ids
    hub.seal(cid)
    sync(hub, home)
    found = match(home, videos["reencoded"], videos["other"])
    assert found["small"] == [] and [(m["signal"], m["match"]) for m in found["other"]] == [(new, True)]


class EditDescriptor(FlaskTransport):
    """Serves the collection's descriptor with its payload changed and the signatures kept."""

    def __init__(self, hub: RealHub, cid: str, change: dict) -> None:
        super().__init__(hub)
        self.cid, self.change = cid, change

    def request(self, method: str, path: str, **kw):  # type: ignore[no-untyped-def, override]
        r = super().request(method, path, **kw)
        if path != f"/v1/collections/{self.cid}":
            return r
        env = json.loads(r.body)
        body = parse_canonical(base64.b64decode(env["payload"]))
        for key, value in self.change.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        env["payload"] = base64.b64encode(canonical_json(body)).decode()
        return Response(r.status, json.dumps(env).encode(), r.headers)


def test_a_tampered_p_in_the_descriptor_is_refused_and_the_kit_keeps_the_signed_one(
    hub: RealHub, tmp_path: Path
) -> None:
    cid = video_collection(hub)
    hub.cosign(cid, datetime.now(UTC))  # a signed checkpoint of size 0
    home = kit_home(hub, tmp_path)
    set_percent(hub, cid, 90)
    sync(hub, home)
    with pytest.raises(errors.DescriptorError):
        sync(hub, home, EditDescriptor(hub, cid, {"vpdq_percent": 1}))
    with pytest.raises(errors.DescriptorError):  # removing it (so that it reads as 80) is tampering too
        sync(hub, home, EditDescriptor(hub, cid, {"vpdq_percent": None}))
    mirror = Mirror.open(cfg.load(home).mirror(home))
    try:
        assert mirror.descriptor(cid).vpdq_match_percent == 90
        envelope = Envelope.from_json(mirror.dump()["collections"][0][1])
        assert parse_canonical(envelope.payload)["vpdq_percent"] == 90
    finally:
        mirror.close()


@pytest.mark.parametrize("value", ['["' + "ab" * 32 + ',100,0"]', "[]", "ab" * 32])
def test_a_signed_batch_with_a_vpdq_value_that_is_not_canonical_is_refused(tmp_path: Path, value: str) -> None:
    from tests.partners.test_indexing import seal_values

    fake = FakeHub()
    fake.add_collection("c1")
    seal_values(fake, "c1", [("v1", "vpdq", value)])
    mirror = Mirror.open(f"sqlite:///{tmp_path / 'mirror.db'}")
    try:
        before = mirror.dump()
        report = Syncer(FakeTransport(fake, snapshots=False), mirror, fake.pin, Policy(), clock=lambda: fake.now,
                        only=("c1",)).sync()
        [error] = report.errors()
        assert isinstance(error, errors.EnvelopeError) and "vpdq add v1" in str(error)
        assert mirror.dump()["signals"] == before["signals"] == []
    finally:
        mirror.close()


@pytest.mark.parametrize(
    "value",
    [
        '["' + "ab" * 32 + ',100,0.000"]',
        '["' + "ab" * 32 + ',100,0.000","' + "cd" * 32 + ',7,1.500"]',
        '["' + "ab" * 32 + ',100,0.000", "' + "cd" * 32 + ',7,1.500"]',  # a space
        '["' + "AB" * 32 + ',100,0.000"]',  # upper case
        '["' + "ab" * 32 + ',100,0"]',  # seconds without three decimals
        '["' + "ab" * 32 + ',100,2.000","' + "cd" * 32 + ',100,1.000"]',  # time going back
        '["' + "ab" * 32 + ',101,0.000"]',
        '["' + "ab" * 32 + ',050,0.000"]',
        "[]",
    ],
)
def test_the_kit_checks_entries_as_the_matcher_reads_them(value: str) -> None:
    """The kit's pattern check (no numpy) and the matcher's parser agree on what is canonical."""
    assert (vpdq_problem(value) is None) == is_canonical_vpdq(value)
