"""Reading an upstream: the network half of a pull, outside any database transaction of the hub.

A hashfed upstream is read as a partner of that hub reads it: the partner kit's `Syncer` verifies every byte
(key sets walked forward from the pinned SHA-256, descriptor, checkpoint freshness and consistency, each batch's
signature and chain) into a mirror kept for the upstream under `<var_dir>/upstreams/`, and the changes that mirror
applied past the upstream's position are the feed. A refused or incomplete sync feeds nothing: pages verified
before the failure wait in the mirror until a later pull succeeds. A StopNCII-shaped upstream is read with
`threatexchange`'s `StopNCIIAPI` from the stored watermark; its records are the latest state of each hash, so the
last record of a hash in a pull decides: Received or Active adds it, Withdrawn or Deleted removes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit.payloads import Provenance
from hub.config import Settings
from hub.errors import HubError
from hub.transparency.keys import load_hub_secret
from hub.upstreams import service
from hub.upstreams.models import Upstream
from hub.upstreams.service import Add, Feed, Remove, UpstreamError
from partners.client import mirror as kit_mirror
from partners.client.errors import HeldBatchError, PartnerError
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.transport import RequestsTransport
from partners.client.verify import Policy

FETCH_PAGE_SIZE = 800  # the StopNCII client's default
# StopNCII signal types this hub takes, by the hub's type; others (VideoTMK, Text, URL) are not fed.
STOPNCII_TYPES = {"ImagePDQ": "pdq", "VideoMD5": "video_md5"}
_ADDED = {"Received", "Active"}
_REMOVED = {"Withdrawn": "withdrawn", "Deleted": "upstream"}
_TIMEOUT_S = 30

log = logging.getLogger(__name__)


def policy_share(policy: Policy | None) -> str:
    return f"{(policy or Policy()).max_removal_share:.0%}"


def mirror_path(var_dir: Path, upstream: Upstream) -> Path:
    """Where the verified mirror of a hashfed upstream lives (one SQLite file per upstream)."""
    return var_dir / "upstreams" / f"{upstream.id}.db"


@contextmanager
def open_mirror(var_dir: Path, upstream: Upstream) -> Iterator[Mirror]:
    path = mirror_path(var_dir, upstream)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mirror = Mirror.open(f"sqlite:///{path.resolve()}")
    try:
        yield mirror
    finally:
        mirror.close()


def confirm_held(var_dir: Path, upstream: Upstream) -> int:
    """An operator lets the batch held in a hashfed upstream's mirror (a mass removal) be applied; its seq."""
    try:
        with open_mirror(var_dir, upstream) as mirror:
            return mirror.confirm(str(upstream.upstream_collection)).seq
    except PartnerError as e:
        raise UpstreamError(str(e)) from e


def _oauth_session(upstream: Upstream, secret: str) -> OAuth2Session:
    token_url = f"{upstream.url}/oauth/token"
    return OAuth2Session(
        upstream.client_id,
        secret,
        scope="feed:read",
        token_endpoint=token_url,
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
        grant_type="client_credentials",
    )


def pull_hashfed(upstream: Upstream, credentials: dict[str, Any], var_dir: Path, *, policy: Policy | None = None
                 ) -> Feed:
    """Sync the upstream collection into its verified mirror and return what it applied past `position`."""
    collection = str(upstream.upstream_collection)
    session = _oauth_session(upstream, str(credentials["client_secret"]))
    try:
        session.fetch_token(session.metadata["token_endpoint"], grant_type="client_credentials")
    except Exception as e:  # authlib and requests raise many kinds; none of their text reaches a log or page
        raise UpstreamError(f"cannot obtain an access token at the upstream ({e.__class__.__name__})") from e
    with open_mirror(var_dir, upstream) as mirror:
        syncer = Syncer(RequestsTransport(upstream.url, session, timeout=_TIMEOUT_S), mirror,
                        str(upstream.keyset_sha256), policy or Policy(), only=(collection,))
        try:
            report = syncer.sync([collection])
        finally:
            session.close()
        errors = report.errors()
        if errors:
            first = errors[0]
            if isinstance(first, HeldBatchError):  # the kit's advice names its own command, not the hub's
                raise UpstreamError(f"{first.check}: a batch removing more than {policy_share(policy)} of the "
                                    f"collection is held; run `hashfed upstreams confirm {upstream.name}`")
            raise UpstreamError(f"{first.check}: {first}")
        head = mirror.heads().get(collection, 0)
        if head < upstream.position:
            raise UpstreamError(f"the mirror holds seq {head}, behind the position {upstream.position} fed")
        return _feed_from(mirror, upstream, collection, head)


def _feed_from(mirror: Mirror, upstream: Upstream, collection: str, head: int) -> Feed:
    feed = Feed(position=head)
    applied, table = kit_mirror.applied, kit_mirror.signals
    with mirror.engine.connect() as conn:
        restarted = conn.scalar(
            select(applied.c.seq).where(applied.c.collection == collection, applied.c.source == "snapshot",
                                        applied.c.seq > upstream.position).limit(1)
        )
        if restarted is not None and upstream.position > 0:
            # The mirror began again from a snapshot past what was fed: removals in between left no trace in it,
            # so the whole upstream set is compared with what was fed.
            active = select(table.c.id).where(table.c.collection == collection, table.c.removed_seq.is_(None))
            feed.complete = frozenset(conn.scalars(active))
    changes = list(mirror.changes(collection, upstream.position, head))
    added = [c.signal_id for c in changes if c.op == "add"]
    quality: dict[str, int | None] = {}
    with mirror.engine.connect() as conn:
        for i in range(0, len(added), 500):
            rows = conn.execute(
                select(table.c.id, table.c.quality).where(
                    table.c.collection == collection, table.c.id.in_(added[i : i + 500])
                )
            )
            quality.update({sid: q for sid, q in rows})
    # Added and removed upstream within this pull: nothing to feed either way.
    removed_here = {c.signal_id for c in changes if c.op == "remove"}
    added_here = set(added)
    for c in changes:
        provenance = Provenance(upstream.name, c.signal_id, c.seq)
        if c.op == "add" and c.signal_id not in removed_here:
            feed.adds.append(Add(c.signal_id, c.type, c.value, provenance, quality.get(c.signal_id)))
        elif c.op == "remove" and c.signal_id not in added_here:
            feed.removes.append(Remove(c.signal_id, "upstream", provenance))
    return feed


def pull_stopncii(upstream: Upstream, credentials: dict[str, Any]) -> Feed:
    """FetchHashes from the watermark with threatexchange's client; the last record of each hash decides."""
    # Imported here, not at the top: `threatexchange` is the optional `stopncii` extra, needed only by a hub
    # that has a StopNCII-shaped upstream.
    try:
        from threatexchange.exchanges.clients.stopncii import api as stopncii
    except ImportError as e:
        raise UpstreamError("a stopncii upstream needs the threatexchange package (pip install 'hashfed[stopncii]')"
                            ) from e
    client = stopncii.StopNCIIAPI(
        str(credentials["subscription_key"]),
        str(credentials["functions_key"]),
        base_url_override=upstream.url,
    )
    start = max(upstream.position, stopncii.StopNCIIAPI.DEFAULT_START_TIME)
    latest: dict[str, tuple[str, str, str, int]] = {}  # ref -> (hub type, value, status, lastModtimestamp)
    position = upstream.position
    token = ""
    pages = 0
    try:
        while True:
            page = client.fetch_hashes(page_size=FETCH_PAGE_SIZE, start_timestamp=start, next_page=token)
            pages += 1
            if page.nextSetTimestamp < position:
                raise UpstreamError(f"nextSetTimestamp went back from {position} to {page.nextSetTimestamp}")
            if page.count != len(page.hashRecords):
                raise UpstreamError(f"a page claims {page.count} records and holds {len(page.hashRecords)}")
            position = page.nextSetTimestamp
            for record in page.hashRecords:
                kind = STOPNCII_TYPES.get(record.signalType.value)
                if kind is None:
                    continue
                value = record.hashValue.lower()
                latest[f"{record.signalType.value}:{value}"] = (kind, value, record.hashStatus.value,
                                                                int(record.lastModtimestamp))
            if not page.hasMoreRecords:
                break
            if not page.nextPageToken or pages > 100_000:
                raise UpstreamError("the upstream says it has more records but gives no page token")
            token = page.nextPageToken
    except requests.RequestException as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise UpstreamError(f"FetchHashes failed ({e.__class__.__name__}{f', HTTP {status}' if status else ''})"
                            ) from e
    except (ValueError, TypeError, KeyError) as e:
        raise UpstreamError(f"FetchHashes answered a malformed page ({e.__class__.__name__})") from e
    feed = Feed(position=position)
    for ref, (kind, value, status, when) in latest.items():
        provenance = Provenance(upstream.name, None, when)
        if status in _ADDED:
            feed.adds.append(Add(ref, kind, value, provenance))
        elif status in _REMOVED:
            feed.removes.append(Remove(ref, _REMOVED[status], provenance))
    return feed


def pull(upstream: Upstream, credentials: dict[str, Any], var_dir: Path) -> Feed:
    """One pull of any kind; `UpstreamError` says why nothing can be fed."""
    try:
        if upstream.kind == "hashfed":
            return pull_hashfed(upstream, credentials, var_dir)
        return pull_stopncii(upstream, credentials)
    except PartnerError as e:
        raise UpstreamError(f"{e.check}: {e}") from e


def pull_upstreams(session_factory: sessionmaker[Session], now: datetime, *, settings: Settings) -> list[str]:
    """The scheduled job: pull each enabled upstream and feed it, one transaction each; a failure applies
    nothing and is kept on the upstream. Returns a line per upstream pulled."""
    with session_factory() as session:
        rows = [u for u in service.list_upstreams(session) if u.enabled]
        for u in rows:
            session.expunge(u)
    if not rows:
        return []
    hub_secret = load_hub_secret(settings.keys_path)
    out: list[str] = []
    for upstream in rows:
        try:
            feed = pull(upstream, service.credentials_of(upstream, hub_secret), settings.var_dir)
            with session_factory.begin() as session:
                current = session.get(Upstream, upstream.id, with_for_update=True)
                if current is None or not current.enabled or current.position != upstream.position:
                    continue  # removed, disabled or fed by another run meanwhile
                done = service.apply(session, current, feed, hub_secret=hub_secret, now=now)
            out.append(f"{done.upstream}: +{done.added} -{done.removed} (skipped {done.skipped}) at {done.position}")
        except Exception as e:  # one upstream's failure, whatever it is, must not stop the others
            if isinstance(e, HubError):
                reason = e.message
                log.warning("upstream %s: nothing fed: %s", upstream.name, reason)
            else:
                reason = f"internal error ({e.__class__.__name__}); see the scheduler's log"
                log.exception("upstream %s: nothing fed", upstream.name)
            with session_factory.begin() as session:
                service.record_failure(session, upstream.id, reason, now)
            out.append(f"{upstream.name}: failed")
    return out
