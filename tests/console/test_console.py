"""The staff console over HTTP: sign-in, sessions, who sees what, CSRF, the page policy and what pages show."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from audit.merkle import leaf_hash, verify_inclusion
from audit.note import Checkpoint
from hub.identity.models import ConsoleSession
from hub.transparency.auditlog import AuditEntry, latest_checkpoint
from tests.console.conftest import GOV_EMAIL, PASSWORD, REG_EMAIL, csrf_token, sign_in
from tests.hub import factories as f

GOVERNANCE_ONLY = ["/console/partners", "/console/collections", "/console/queue"]
FOR_BOTH = ["/console/", "/console/audit"]
POLICY = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
}


def policy(header: str) -> dict[str, list[str]]:
    directives = (d.split() for d in header.split(";") if d.strip())
    return {name: sources for name, *sources in directives}


class Inline(HTMLParser):
    """Inline script or style of a page: script elements with a body, style elements, style attributes,
    event-handler attributes; and every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.urls: list[str] = []
        self._script = False

    def handle_starttag(self, tag, attrs):
        names = {n for n, _ in attrs}
        self.urls += [v for n, v in attrs if n in ("src", "href") and v]
        if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
            self.found.append(tag)
        self._script = tag == "script"

    def handle_endtag(self, tag):
        self._script = False

    def handle_data(self, data):
        if self._script and data.strip():
            self.found.append("script body")


def pages(world) -> list[str]:
    c = world.w.c
    return [*FOR_BOTH, *GOVERNANCE_ONLY, f"/console/partners/{world.w.a.id}", f"/console/collections/{c.id}",
            f"/console/disputes/{world.dispute_id}"]


def test_every_page_needs_a_session(client, world):
    for url in pages(world):
        r = client.get(url)
        assert r.status_code == 303, url
        assert r.headers["Location"].endswith("/console/sign-in"), url
    r = client.get("/console/audit/proof?seq=0&size=1")
    assert r.status_code == 401 and r.json["code"] == 401


def test_sign_in_form_then_sign_out(client, world, session):
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<label for="email">' in html and '<label for="password">' in html
    token = csrf_token(html)
    wrong = client.post("/console/sign-in",
                        data={"email": GOV_EMAIL, "password": "not the password", "csrf_token": token})
    assert wrong.status_code == 401 and "Sign-in failed" in wrong.get_data(as_text=True)
    r = client.post("/console/sign-in", data={"email": GOV_EMAIL, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"].endswith("/console/")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    dashboard = client.get("/console/")
    assert dashboard.status_code == 200 and GOV_EMAIL in dashboard.get_data(as_text=True)
    # The session's token differs from the sign-in form's: forms are bound to the session they came from.
    session_token = csrf_token(dashboard.get_data(as_text=True))
    assert session_token != token
    assert client.post("/console/sign-out", data={"csrf_token": token}).status_code == 400
    out = client.post("/console/sign-out", data={"csrf_token": session_token})
    assert out.status_code == 303 and out.headers["Location"].endswith("/console/sign-in")
    assert client.get("/console/").status_code == 303
    live = select(func.count()).select_from(ConsoleSession).where(ConsoleSession.revoked_at.is_(None))
    assert session.scalar(live) == 0


def _counts(session) -> tuple[int, int]:
    f.as_system(session)
    return (session.scalar(select(func.count()).select_from(ConsoleSession)),
            session.scalar(select(func.count()).select_from(AuditEntry)))


@pytest.mark.parametrize("token", [None, "", "0" * 64], ids=["no token", "empty token", "forged token"])
def test_a_post_without_its_csrf_token_is_refused_and_writes_nothing(client, world, session, token):
    client.get("/console/sign-in")  # the pre-session cookie is set; the form's token is not sent
    before = _counts(session)
    data = {"email": GOV_EMAIL, "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    r = client.post("/console/sign-in", data=data)
    assert r.status_code == 400
    assert "hashfed_session" not in r.headers.get("Set-Cookie", "")
    assert _counts(session) == before
    # Signed in, sign-out without the token leaves the session open.
    sign_in(client, GOV_EMAIL)
    before = _counts(session)
    r = client.post("/console/sign-out", data={} if token is None else {"csrf_token": token})
    assert r.status_code == 400
    assert _counts(session) == before
    assert client.get("/console/").status_code == 200


def test_a_sign_in_form_token_from_another_browser_is_refused(client, app, world):
    other = app.test_client()
    token = csrf_token(other.get("/console/sign-in").get_data(as_text=True))
    client.get("/console/sign-in")
    r = client.post("/console/sign-in", data={"email": GOV_EMAIL, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 400


def test_the_json_login_and_logout_need_no_csrf_token(client, world):
    r = client.post("/console/login", json={"email": GOV_EMAIL, "password": PASSWORD})
    assert r.status_code == 200 and set(r.json) == {"user", "partner"}
    assert client.get("/console/").status_code == 200
    assert client.post("/console/tokens", json={"name": "cli", "scopes": ["audit:read"]}).status_code == 201
    assert client.post("/console/logout").status_code == 204
    assert client.get("/console/").status_code == 303


def test_regulator_staff_see_the_dashboard_and_audit_browser_only(client, world):
    sign_in(client, REG_EMAIL)
    for url in FOR_BOTH:
        r = client.get(url)
        assert r.status_code == 200, url
        html = r.get_data(as_text=True)
        assert "/console/partners" not in html and "/console/collections" not in html, url
        assert "read only" in html
    assert client.get("/console/audit/proof?seq=0&size=1").status_code == 200
    for url in pages(world)[len(FOR_BOTH):]:
        r = client.get(url)
        assert r.status_code == 403, url
        assert "governance staff" in r.get_data(as_text=True)


def test_governance_staff_see_every_page_and_never_a_raw_hash(client, world):
    sign_in(client, GOV_EMAIL)
    for url in pages(world):
        r = client.get(url)
        assert r.status_code == 200, url
        html = r.get_data(as_text=True).lower()
        for value in world.w.values:
            assert value[:9] not in html, url  # not even a prefix longer than 8 hex digits
    assert client.get("/console/partners/nope").status_code == 404
    assert client.get("/console/collections/nope").status_code == 404


def test_every_console_response_carries_the_strict_policy(client, world):
    responses = [client.get("/console/sign-in")]
    sign_in(client, GOV_EMAIL)
    responses += [client.get(u) for u in pages(world)]
    responses.append(client.get("/console/partners/nope"))  # an error page
    responses.append(client.get("/console/audit/proof?seq=0&size=1"))
    for r in responses:
        assert policy(r.headers["Content-Security-Policy"]) == POLICY, r.request.path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"
        if r.mimetype == "text/html":
            parsed = Inline()
            parsed.feed(r.get_data(as_text=True))
            assert parsed.found == [], r.request.path
            # Every asset comes from the hub, and is served.
            for url in parsed.urls:
                assert url.startswith(("/", "#")) and not url.startswith("//"), url
    for name in ("console.css", "audit.js", "favicon.svg"):
        r = client.get(f"/console/static/{name}")
        assert r.status_code == 200, name
        assert policy(r.headers["Content-Security-Policy"]) == POLICY


def test_dashboard_shows_signals_weekly_reports_and_acks(client, world):
    sign_in(client, GOV_EMAIL)
    html = client.get("/console/").get_data(as_text=True)
    slug = world.w.c.slug
    assert f">{slug}</a></td>\n        <td>pdq</td><td class=\"num\">3</td>" in html
    # This week (W10): one pending report; last week (W09): two removed ones, matched 7 and 8 days ago.
    assert '<th scope="row">2026-W10</th><td class="num">1</td>' in html
    assert '<th scope="row">2026-W09</th><td class="num">0</td><td class="num">0</td><td class="num">2</td>' in html
    assert html.count('<rect class="o-removed"') == 2  # one bar segment and the legend's swatch
    assert "<svg" in html and 'role="img"' in html
    assert f"{slug} at size 2" in html  # partner A's ack


def test_audit_browser_pages_newest_first_and_serves_the_api_s_proof(client, world, session):
    sign_in(client, GOV_EMAIL)
    html = client.get("/console/audit").get_data(as_text=True)
    total = session.scalar(select(func.count()).select_from(AuditEntry))
    assert f"({total} recorded)" in html  # entries made after the checkpoint are listed too
    first = html.index(f'id="entry-{total - 1}"')
    assert first < html.index(f'id="entry-{total - 2}"')
    assert "valid: checked by the hub" in html
    older = client.get(f"/console/audit?before={total - 5}").get_data(as_text=True)
    assert f'id="entry-{total - 6}"' in older and f'id="entry-{total - 5}"' not in older
    assert f'href="/console/audit?before={total}"' in older  # back to the newest page

    cp = latest_checkpoint(session)
    size = Checkpoint.from_text(cp.note.split("\n\n")[0] + "\n").size
    seq = world.ack_seq
    mine = client.get(f"/console/audit/proof?seq={seq}&size={size}")
    token = f.token(session, f.partner(session, kind="regulator"), ["audit:read"])
    api = client.get(f"/v1/audit/proofs/inclusion?seq={seq}&size={size}", headers=f.auth(token))
    assert mine.status_code == api.status_code == 200
    assert mine.json == api.json
    entry = session.get(AuditEntry, seq).entry
    verify_inclusion(seq, size, leaf_hash(bytes(entry)), [base64.b64decode(h) for h in mine.json["proof"]],
                     bytes(cp.root))
    assert client.get(f"/console/audit/proof?seq={size}&size={size}").status_code == 400
    assert client.get(f"/console/audit/proof?seq=0&size={size + 1000}").status_code == 404
    assert client.get("/console/audit/proof?seq=x&size=1").status_code == 400


def test_the_sign_in_form_is_rate_limited_per_login_name(settings, database, session_factory, world):
    from hub.app import create_app

    app = create_app(settings.replace(login_rate_limit="2/minute"), engine=database.engine,
                     session_factory=session_factory)
    c = app.test_client()
    token = csrf_token(c.get("/console/sign-in").get_data(as_text=True))
    wrong = {"email": GOV_EMAIL, "password": "not the password", "csrf_token": token}
    assert [c.post("/console/sign-in", data=wrong).status_code for _ in range(3)] == [401, 401, 429]
    # Another account from the same address may still sign in.
    right = {"email": REG_EMAIL, "password": PASSWORD, "csrf_token": token}
    assert c.post("/console/sign-in", data=right).status_code == 303
