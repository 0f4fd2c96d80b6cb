"""Collections: creation, access changes (audited, re-signed descriptor), visibility."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from audit.keyset import TrustedKeySet
from audit.payloads import CollectionDescriptor, open_payload
from hub.errors import ConflictError, NotFoundError, ValidationError
from hub.feed import collections
from hub.transparency import keys
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.hub import feedkit as kit


def _trusted(session):
    row = keys.latest_record(session)
    return TrustedKeySet(bytes(row.envelope), row.payload_sha256)


def test_descriptor_is_signed_by_the_collection_key(session, settings):
    hk = kit.hub_keys(session, settings)
    owner = kit.partner(session)
    c = kit.collection(session, hk, owner, slug="ncii-main")
    d = open_payload(_trusted(session), bytes(c.descriptor), CollectionDescriptor, at=kit.T0)
    assert d.origin == f"hub.test/collections/{c.id}"
    assert d.signal_types == ("pdq", "md5", "sha256") and d.min_quality == 50
    assert collections.visible_to(session, owner.id) == [c]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"slug": "Bad Slug"}, "slug"),
        ({"pdq_threshold": 300}, "pdq_threshold"),
        ({"min_quality": -1}, "min_quality"),
        ({"signal_types": ["tmk"]}, "signal_types"),
        ({"category": ""}, "category"),
    ],
    ids=["slug with space", "threshold above 256", "negative quality", "unknown type", "empty category"],
)
def test_bad_settings_are_refused(session, settings, changes, field):
    hk = kit.hub_keys(session, settings)
    owner = kit.partner(session)
    args = dict(
        slug="ok", owner_id=owner.id, category="ncii", signal_types=["pdq"], pdq_threshold=31, min_quality=50
    )
    args.update(changes)
    with pytest.raises(ValidationError) as e:
        collections.create_collection(
            session, **args, actor=Actor.operator(), hub_name="hub.test", signer=hk.signer("collection")
        )
    assert field in " ".join(e.value.errors["collection"])


def test_duplicate_slug_is_a_conflict(session, settings):
    hk = kit.hub_keys(session, settings)
    owner = kit.partner(session)
    kit.collection(session, hk, owner, slug="same")
    with pytest.raises(ConflictError):
        kit.collection(session, hk, owner, slug="same")


def test_access_changes_are_audited_and_re_sign_the_descriptor(session, settings):
    hk = kit.hub_keys(session, settings)
    owner, reader = kit.partner(session), kit.partner(session)
    c = kit.collection(session, hk, owner)
    with pytest.raises(NotFoundError):
        collections.readable(session, c.id, reader.id)
    version = c.descriptor_version
    kit.grant(session, hk, c, reader)
    assert collections.readable(session, c.id, reader.id) is c
    assert c.descriptor_version == version + 1
    entry = session.scalars(select(AuditEntry.entry).where(AuditEntry.seq == c.descriptor_audit_seq)).one()
    assert b"collection.reader.grant" in entry and reader.id.encode() in entry
    kit.grant(session, hk, c, reader, granted=False)
    with pytest.raises(NotFoundError):
        collections.readable(session, c.id, reader.id)
    assert collections.members(session, c.id) == {"reader": [owner.id], "contributor": [owner.id]}
    assert hashlib.sha256(bytes(c.descriptor)).hexdigest()
