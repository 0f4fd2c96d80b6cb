"""`hashfed disputes list|show|decide` and `hashfed cases withdraw`: the operator's twins of the governance API.

The operator acts as `governance.Staff.operator()` (audit actor `operator`, no staff user), under the same
rules as staff over the API: a reason for every decision, and with the four-eyes rule on
(HASHFED_FOUR_EYES_UPHOLD, as the serving hub reads it) an uphold is only proposed until a second member of
staff confirms it; the operator cannot confirm its own. Each command is one transaction with its audit entry;
a refusal exits non-zero and writes nothing. Nothing printed shows a hash beyond its type and a short prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub.cli.context import emit, json_option, unit_of_work
from hub.config import Settings
from hub.errors import HubError
from hub.feed import signals
from hub.feed.models import Collection, Signal
from hub.governance import schemas
from hub.governance import service as governance
from hub.governance.models import Decision, DisputeReason, DisputeStatus
from hub.identity import tenants
from hub.transparency.auditlog import Actor
from hub.transparency.keys import ensure_hub_secret

ACTIONS = (*governance.DECIDE_ACTIONS, "confirm")


@contextmanager
def _refusals() -> Iterator[None]:
    """A hub refusal as a one-line error naming the bad fields (raised inside the unit of work: rolled back)."""
    try:
        yield
    except HubError as e:
        problems = "; ".join(f"{name}: {', '.join(map(str, why))}" for name, why in (e.errors or {}).items())
        raise click.ClickException(f"{e.message} ({problems})" if problems else e.message) from e


def _by(d: Decision) -> str:
    return d.user_id or "operator"


def _age(seconds: int) -> str:
    days, rest = divmod(max(seconds, 0), 86400)
    return f"{days}d{rest // 3600:02d}h"


@click.group("disputes")
def disputes_group() -> None:
    """Disputes about signals: the review queue and decisions (as the operator)."""


@disputes_group.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in DisputeStatus]),
              help="repeatable (default: the queue: open, awaiting_confirmation, quarantined)")
@click.option("--reason", type=click.Choice([r.value for r in DisputeReason]), default=None)
@click.option("--collection", default=None, help="a collection id or slug")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_obj
def disputes_list(settings: Settings, statuses: tuple[str, ...], reason: str | None, collection: str | None,
                  limit: int, as_json: bool) -> None:
    """Disputes waiting for a decision, oldest first: id, status, age, reason, signal type:prefix, collection."""
    with unit_of_work(settings) as session, _refusals():
        collection_id = _collection_id(session, collection) if collection else None
        rows = governance.queue(session, statuses=list(statuses) or None, collection_id=collection_id,
                                reason=reason, limit=limit)
        if as_json:
            click.echo(json.dumps({"disputes": [schemas.queue_view(r) for r in rows]}))
            return
        for r in rows:
            d = r.dispute
            click.echo(f"{d.id}\t{d.status}\t{_age(int(r.age.total_seconds()))}\t{d.reason}\t"
                       f"{r.signal_type}:{r.prefix}\t{r.collection_slug}\t{d.assignee_id or '-'}")
        if not rows:
            click.echo("no disputes", err=True)


def _collection_id(session: Session, ref: str) -> str:
    found = session.scalar(select(Collection.id).where(or_(Collection.id == ref, Collection.slug == ref)))
    if found is None:
        raise click.BadParameter(f"no collection {ref!r}", param_hint="--collection")
    return found


def _view(session: Session, dispute_id: str) -> dict[str, Any]:
    """The staff view of the API (decisions, assignee, the signal's history) with who decided, and the
    signal's type and prefix instead of its value."""
    dispute, decisions = governance.staff_dispute(session, dispute_id)
    signal = session.get(Signal, dispute.signal_id)
    collection = session.get(Collection, dispute.collection_id)
    view = schemas.dispute_view(dispute, decisions)
    view["decisions"] = [{**schemas.decision_view(d), "by": _by(d)} for d in decisions]
    view.update(
        partner=dispute.partner_id,
        contributor=dispute.contributor_id,
        assignee=dispute.assignee_id,
        signal_type=signal.type if signal else None,
        signal_prefix=signal.value[:8] if signal else None,
        collection_slug=collection.slug if collection else None,
        history=[schemas.history_view(e) for e in governance.signal_history(session, dispute.signal_id)],
    )
    return view


def _print_view(view: dict[str, Any]) -> None:
    click.echo(f"dispute id: {view['id']}")
    click.echo(f"status: {view['status']}")
    click.echo(f"reason: {view['reason']}")
    click.echo(f"source: {view['source']}" + (f" (partner {view['partner']})" if view["partner"] else ""))
    click.echo(f"signal: {view['signal']} ({view['signal_type']} {view['signal_prefix']}…)")
    click.echo(f"collection: {view['collection']} ({view['collection_slug']})")
    click.echo(f"contributor: {view['contributor']}")
    click.echo(f"opened at: {view['opened_at']} (audit seq {view['audit_seq']})")
    for label, key in (("note", "note"), ("answer", "answer"), ("assignee", "assignee"), ("decided at", "decided_at")):
        if view[key] is not None:
            click.echo(f"{label}: {view[key]}")
    for d in view["decisions"]:
        click.echo(f"decision: {d['at']} {d['action']} ({d['state']}) by {d['by']}: {d['reason']}"
                   f" (audit seq {d['audit_seq']})")
    for e in view["history"]:
        seq = "" if e["audit_seq"] is None else f" (audit seq {e['audit_seq']})"
        click.echo(f"history: {e['at']} {e['kind']}: {e['summary']}{seq}")


@disputes_group.command("show")
@click.argument("dispute_id")
@json_option
@click.pass_obj
def disputes_show(settings: Settings, dispute_id: str, as_json: bool) -> None:
    """A dispute with every decision and its signal's history (the hash only as its type and a prefix)."""
    with unit_of_work(settings) as session, _refusals():
        view = _view(session, dispute_id)
    if as_json:
        click.echo(json.dumps(view))
    else:
        _print_view(view)


@disputes_group.command("decide")
@click.argument("dispute_id")
@click.option("--action", type=click.Choice(ACTIONS), required=True,
              help="uphold (retire the hash everywhere), reject, quarantine (withhold from the feed), release, "
                   "or confirm a staff member's uphold")
@click.option("--reason", required=True, help="why: kept with the decision, bound by its SHA-256 in the audit log")
@json_option
@click.pass_obj
def disputes_decide(settings: Settings, dispute_id: str, action: str, reason: str, as_json: bool) -> None:
    """Decide DISPUTE_ID as the operator; removes and re-adds reach partners with the next sealed batch."""
    with unit_of_work(settings) as session, _refusals():
        decision = governance.decide(session, dispute_id=dispute_id, action=action, reason=reason,
                                     staff=governance.Staff.operator(), four_eyes=settings.four_eyes_uphold)
        dispute, _ = governance.staff_dispute(session, dispute_id)
        fields = {
            "dispute id": dispute.id,
            "status": dispute.status,
            "decision id": decision.id,
            "action": decision.action,
            "state": decision.state,
            "audit seq": decision.audit_seq,
        }
    note = None
    if decision.state == "proposed":
        note = "the four-eyes rule is on: the uphold takes effect when a member of staff confirms it"
    emit(fields, as_json, note=note)


@click.group("cases")
def cases_group() -> None:
    """Cases: the claims a partner's case holds on signals."""


@cases_group.command("withdraw")
@click.argument("partner")
@click.argument("case_ref")
@json_option
@click.pass_obj
def cases_withdraw(settings: Settings, partner: str, case_ref: str, as_json: bool) -> None:
    """Withdraw PARTNER's (id or name) case CASE_REF on its behalf (e.g. a survivor asked the helpline by
    phone): its claims go, and a hash leaves the feed when no claim is left on it. Audited with the operator
    as actor, without the reference."""
    with unit_of_work(settings) as session, _refusals():
        p = tenants.get_partner(session, partner)
        done = signals.withdraw_case(session, partner_id=p.id, case_ref=case_ref,
                                     hub_secret=ensure_hub_secret(settings.keys_path), actor=Actor.operator())
        fields = {"partner id": p.id, "claims": done.claims, "removed": len(done.removed), "audit seq": done.audit_seq}
    emit(fields, as_json)


COMMANDS: tuple[click.Command, ...] = (disputes_group, cases_group)
