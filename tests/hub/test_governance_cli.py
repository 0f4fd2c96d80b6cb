"""`hashfed disputes list|show|decide` and `hashfed cases withdraw` against a committed database: the operator
decides as `Staff.operator()`, each command is one transaction, and a refusal exits non-zero writing nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub import rls
from hub.cli.main import main
from hub.config import Settings
from hub.db import make_session_factory
from hub.feed import collections, signals
from hub.feed.models import Access, PendingChange, Signal, SignalClaim
from hub.governance import service as governance
from hub.governance.models import Decision, Dispute
from hub.transparency.auditlog import Actor
from hub.transparency.keys import ensure_hub_secret
from hub.transparency.models import AuditEntry
from tests.conftest import Database
from tests.hub import factories as f
from tests.hub import feedkit as kit
from tests.hub import reportkit as rk


@dataclass
class Hub:
    env: dict[str, str]
    settings: Settings
    factory: sessionmaker[Session]
    w: rk.World
    disputes: list[str]  # open disputes on signals 0 (by partner a), 1 (by b) and 2 (by a)

    def run(self, *args: str, **env: str) -> Result:
        return CliRunner().invoke(main, list(args), env={**self.env, **env})

    def ok(self, *args: str, **env: str) -> str:
        result = self.run(*args, **env)
        assert result.exit_code == 0, result.output
        return result.output

    def counts(self) -> tuple[int, ...]:
        with self.factory() as s:
            rls.set_tenant(s, rls.SYSTEM)
            return tuple(
                s.scalar(select(func.count()).select_from(t))
                for t in (Dispute, Decision, AuditEntry, PendingChange, SignalClaim)
            )

    def entry(self, seq: int) -> dict:
        with self.factory() as s:
            return json.loads(s.scalar(select(AuditEntry.entry).where(AuditEntry.seq == seq)))

    def signal(self, signal_id: str) -> Signal:
        with self.factory() as s:
            rls.set_tenant(s, rls.SYSTEM)
            found = s.get(Signal, signal_id)
            assert found is not None
            return found


@pytest.fixture
def hub(fresh_database: Database, tmp_path: Path) -> Hub:
    settings = Settings(var_dir=tmp_path / "var", database_url=fresh_database.app_url, hub_name="hub.test")
    env = {
        "HASHFED_VAR_DIR": str(settings.var_dir),
        "HASHFED_DATABASE_URL": fresh_database.app_url,
        "HASHFED_HUB_NAME": "hub.test",
    }
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        w = rk.build(s, settings)
        opened = []
        for i, p in enumerate((w.a, w.b, w.a)):
            body = {"id": f"d-{i}", "signal": w.signals[i], "reason": "false_positive", "note": "a cartoon"}
            dispute, _ = governance.open_dispute(
                s, partner_id=p.id, body=body, actor=Actor(type="partner", partner=p.id)
            )
            opened.append(dispute.id)
    return Hub(env, settings, factory, w, opened)


def test_list_and_show_give_the_queue_and_history_never_the_whole_hash(hub: Hub):
    w = hub.w
    listed = hub.ok("disputes", "list")
    rows = [line.split("\t") for line in listed.splitlines()]
    assert [r[0] for r in rows] == hub.disputes  # oldest first
    assert rows[0][1:2] + rows[0][3:5] == ["open", "false_positive", f"pdq:{w.values[0][:8]}"]
    assert not any(v in listed for v in w.values)
    as_json = json.loads(hub.ok("disputes", "list", "--json", "--collection", w.c.slug))
    assert [r["dispute"]["id"] for r in as_json["disputes"]] == hub.disputes
    assert as_json["disputes"][1]["signal_prefix"] == w.values[1][:8]
    assert hub.ok("disputes", "list", "--status", "rejected", "--json") == '{"disputes": []}\n'

    shown = hub.ok("disputes", "show", hub.disputes[0])
    assert shown.startswith(f"dispute id: {hub.disputes[0]}\nstatus: open\nreason: false_positive\n")
    assert f"source: partner (partner {w.a.id})" in shown and "note: a cartoon" in shown
    assert f"signal: {w.signals[0]} (pdq {w.values[0][:8]}…)" in shown
    assert "history: " in shown and "pdq added to its collection" in shown and "dispute opened" in shown
    assert w.values[0] not in shown
    view = json.loads(hub.ok("disputes", "show", hub.disputes[0], "--json"))
    assert (view["id"], view["status"], view["decisions"], view["signal_type"]) == (hub.disputes[0], "open", [], "pdq")
    assert [e["kind"] for e in view["history"]] == ["added", "dispute"]
    assert w.values[0] not in json.dumps(view)

    for bad in (["disputes", "show", "0" * 36], ["disputes", "show", "x" * 40]):
        missing = hub.run(*bad)
        assert missing.exit_code == 1 and "no such dispute" in missing.output
    unknown = hub.run("disputes", "list", "--collection", "nowhere")
    assert unknown.exit_code == 2 and "no collection 'nowhere'" in unknown.output


def test_decide_quarantine_then_release_as_the_operator(hub: Hub):
    d = hub.disputes[0]
    before = hub.counts()
    for args, code, message in [
        (["--action", "delete", "--reason", "x"], 2, "Invalid value for '--action'"),
        (["--action", "reject"], 2, "Missing option '--reason'"),
        (["--action", "reject", "--reason", "  "], 1, "invalid reason (reason: a string of 1-1000 characters)"),
        (["--action", "release", "--reason", "checked"], 1, "a dispute that is open cannot be given `release`"),
        (["--action", "confirm", "--reason", "checked"], 1, "no uphold of this dispute awaits confirmation"),
    ]:
        refused = hub.run("disputes", "decide", d, *args)
        assert refused.exit_code == code and message in refused.output, refused.output
    assert hub.run("disputes", "decide", "0" * 36, "--action", "reject", "--reason", "x").exit_code == 1
    assert hub.counts() == before

    out = hub.ok("disputes", "decide", d, "--action", "quarantine", "--reason", "checking with the source")
    assert f"dispute id: {d}\nstatus: quarantined\n" in out and "action: quarantine\nstate: effective\n" in out
    seq = int(out.split("audit seq: ")[1].split()[0])
    entry = hub.entry(seq)
    assert entry["action"] == "dispute.decide" and entry["actor"] == {"type": "operator", "name": "cli"}
    assert "checking with the source" not in json.dumps(entry) and "reason_sha256" in entry["details"]
    assert hub.signal(hub.w.signals[0]).status == "quarantined"

    released = json.loads(hub.ok("disputes", "decide", d, "--action", "release", "--reason", "the source agreed",
                                 "--json"))
    assert (released["status"], released["action"], released["state"]) == ("released", "release", "effective")
    assert hub.signal(hub.w.signals[0]).status == "released"
    shown = hub.ok("disputes", "show", d)
    assert "decision: " in shown and "quarantine (effective) by operator: checking with the source" in shown
    assert "release (effective) by operator: the source agreed" in shown


def test_an_uphold_waits_for_a_second_person_unless_four_eyes_is_off(hub: Hub):
    d = hub.disputes[1]
    proposed = hub.ok("disputes", "decide", d, "--action", "uphold", "--reason", "a known false match")
    assert "status: awaiting_confirmation" in proposed and "state: proposed" in proposed
    assert "takes effect when a member of staff confirms it" in proposed
    assert hub.signal(hub.w.signals[1]).status == "active"
    before = hub.counts()
    own = hub.run("disputes", "decide", d, "--action", "confirm", "--reason", "yes")
    assert own.exit_code == 1 and "a second staff member" in own.output
    assert hub.counts() == before
    rejected = hub.ok("disputes", "decide", d, "--action", "reject", "--reason", "on reflection, no")
    assert "status: rejected" in rejected

    at_once = hub.ok("disputes", "decide", hub.disputes[2], "--action", "uphold", "--reason", "retire it",
                     HASHFED_FOUR_EYES_UPHOLD="off")
    assert "status: upheld" in at_once and "state: effective" in at_once and "confirms" not in at_once
    signal = hub.signal(hub.w.signals[2])
    assert (signal.status, signal.removal_reason) == ("retired", "retired")


def test_the_operator_withdraws_a_partners_case(hub: Hub):
    w = hub.w
    with hub.factory.begin() as s:
        intake = f.partner(s, kind="intake", name="helpline")
        collections.set_access(
            s, w.c.id, intake.id, Access.CONTRIBUTOR, True, actor=Actor.operator(), hub_name=w.keys.hub_name,
            signer=w.keys.signer("collection"), now=kit.T0,
        )
        secret = ensure_hub_secret(hub.settings.keys_path)  # the one the CLI and the serving hub use
        value = kit.pdq()
        for case in ("case 7/2026", "case 8/2026"):
            item = {"type": "pdq", "value": value, "case_ref": case}
            done = signals.submit(
                s, collection_id=w.c.id, partner_id=intake.id, items=[item], actor=kit.actor_of(intake),
                hub_secret=secret,
            )
        sid = done.body["ids"][0]

    first = json.loads(hub.ok("cases", "withdraw", "helpline", "case 7/2026", "--json"))
    assert (first["partner_id"], first["claims"], first["removed"]) == (intake.id, 1, 0)
    entry = hub.entry(first["audit_seq"])
    assert entry["action"] == "case.withdraw" and entry["actor"]["type"] == "operator"
    assert "case 7" not in json.dumps(entry)
    assert hub.signal(sid).status == "active"  # the other case still claims it

    before = hub.counts()
    for args, message in [
        (("helpline", "case 7/2026"), "no such case"),  # withdrawn already
        ((w.a.id, "case 8/2026"), "no such case"),  # another partner's case
        (("nobody", "case 8/2026"), "no partner 'nobody'"),
        (("helpline", "x" * 600), "invalid case reference"),
    ]:
        refused = hub.run("cases", "withdraw", *args)
        assert refused.exit_code == 1 and message in refused.output, refused.output
    assert hub.counts() == before

    last = hub.ok("cases", "withdraw", intake.id, "case 8/2026")
    assert f"partner id: {intake.id}\nclaims: 1\nremoved: 1\n" in last
    signal = hub.signal(sid)
    assert (signal.status, signal.removal_reason) == ("retracted", "withdrawn")
