"""The console's Upstreams page: staff see each upstream's state and why its last pull fed nothing."""

from __future__ import annotations

from hub.transparency.auditlog import Actor
from hub.upstreams import service
from tests.console.conftest import GOV_EMAIL, NOW, REG_EMAIL, sign_in
from tests.hub import factories as f


def test_staff_see_a_failing_upstream_and_its_reason_but_never_its_credentials(app, client, world, session,
                                                                               settings):
    f.as_system(session)
    row = service.add(session, name="hub-a", kind="stopncii", url="https://stopncii.example/v1",
                      collection=world.w.c.id, partner=None,
                      credentials={"subscription_key": "sub-secret-1", "functions_key": "fn-secret-2"},
                      hub_secret=f.hub_secret(settings), actor=Actor.operator(), now=NOW)
    service.record_failure(session, row.id, "FetchHashes failed (HTTPError, HTTP 401)", NOW)
    session.commit()
    sign_in(client, GOV_EMAIL)
    page = client.get("/console/upstreams")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "hub-a" in html and "failing" in html and "FetchHashes failed (HTTPError, HTTP 401)" in html
    assert "sub-secret-1" not in html and "fn-secret-2" not in html
    assert 'href="/console/upstreams"' in client.get("/console/").get_data(as_text=True)

    other = app.test_client()
    sign_in(other, REG_EMAIL)
    assert other.get("/console/upstreams").status_code == 403  # governance staff only, as the collections page
