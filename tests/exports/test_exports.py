"""Transparency exports end to end: known answers, suppression, forged bundles refused, nothing identifying."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from audit import cli as audit_cli
from audit.exports import Aggregator, json_line, parse_period, publish, suppress_table, verify_bundle
from audit.signing import Ed25519Signer
from hub.config import Settings
from hub.exports import service
from hub.transparency.auditlog import Actor
from hub.transparency.keys import all_envelopes
from tests.exports import scenario as sc
from tests.hub import factories as f


@pytest.fixture
def quarter(session: Session, settings: Settings) -> sc.Quarter:
    return sc.build(session, settings)


def _bundle(session: Session, q: sc.Quarter, threshold: int = 10, tmp: Path | None = None) -> bytes:
    with sc.at(sc.EXPORTED):
        row = service.create(session, q.keys, sc.Q3, actor=Actor.operator(), partner_id=None, threshold=threshold)
        out = io.BytesIO()
        service.write(session, q.keys, row, out)
    data = out.getvalue()
    assert hashlib.sha256(data).hexdigest() == row.bundle_sha256
    return data


def _pin(session: Session) -> str:
    from audit.dsse import Envelope

    return hashlib.sha256(Envelope.from_json(all_envelopes(session)[0]).payload).hexdigest()


def _verify(tmp_path: Path, data: bytes, pin: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    return verify_bundle(str(path), pin)


def test_every_aggregate_has_its_known_answer(session: Session, quarter: sc.Quarter, tmp_path: Path) -> None:
    data = _bundle(session, quarter, threshold=1)
    report = _verify(tmp_path, data, _pin(session))
    assert report.ok, report.verdict
    a = report.aggregates
    c = quarter.c.id
    # added, withdrawn (a retraction, a case), retired (X2 upheld, an MD5 by value), quarantined (X1, X4),
    # released (X1, under a new id), total
    assert a["signals"]["columns"] == ["added", "withdrawn", "retired", "quarantined", "released", "total"]
    assert a["signals"]["rows"] == {f"{c}/md5": [3, 0, 1, 0, 0, 4], f"{c}/pdq": [12, 2, 1, 2, 1, 18]}
    assert a["signals"]["total"] == [15, 2, 2, 2, 1, 22]
    # blocked, removed, restricted, no_action, false_positive, pending_review, total
    assert a["outcomes"]["rows"] == {c: [2, 12, 0, 0, 0, 3, 17]}
    assert a["reports_received"] == 15
    assert a["automated_detection_percent"] == "80.0"  # 12 of 15
    assert a["automated_decision_percent"] == "14.3"  # 2 of 14 decisions
    assert a["blocked_or_removed_percent"] == "100.0"
    assert a["actioned"] == 14
    assert a["median_seconds_to_action"] == 420  # 7th of 60, 120, ..., 720, 1000, 2000
    assert a["p90_seconds_to_action"] == 1000  # 13th of 14
    assert (a["partners_receiving"], a["partners_acknowledging"], a["partners_reporting"]) == (2, 1, 2)
    assert a["partner_suspensions"] == 1
    # opened (X3, X4, X5), quarantined (X1, X4), upheld (X2), rejected (X3), released (X1), total; X5's
    # proposed uphold is no event until it is confirmed.
    assert a["disputes"]["columns"] == ["opened", "quarantined", "upheld", "rejected", "released", "total"]
    assert a["disputes"]["rows"] == {c: [3, 2, 1, 1, 1, 8]}
    assert a["disputes"]["total"] == [3, 2, 1, 1, 1, 8]
    assert a["disputes_decided"] == 3
    # X3 rejected after 40 d 19 h, X2 upheld after 61 d 8 h, X1 released after 61 d 9 h: the 2nd of 3.
    assert a["median_seconds_to_decision"] == 61 * 86400 + 8 * 3600
    assert (report.records, report.signal_events, report.dispute_events) == (17, 22, 8)
    assert report.notes == []
    files = sc.members(data)
    assert "omitted" not in json.loads(files["manifest.json"])
    # X1 and X2 were opened before the period: their dispute.open entries are carried and proved too.
    assert len(json.loads(files["proof.json"])["earlier"]) == 2


def test_small_cells_are_withheld_with_their_complements(
    session: Session, quarter: sc.Quarter, tmp_path: Path
) -> None:
    data = _bundle(session, quarter)
    report = _verify(tmp_path, data, _pin(session))
    assert report.ok, report.verdict
    a = report.aggregates
    c = quarter.c.id
    # md5's 3, 1 and pdq's 2, 1, 2, 1 are small; 12 and 18 go with them: no row or column gives them away.
    assert a["signals"]["rows"] == {
        f"{c}/md5": [None, 0, None, 0, 0, None], f"{c}/pdq": [None, None, None, None, None, None]
    }
    assert a["signals"]["total"] == [15, None, None, None, None, 22]
    # Every dispute count is small; the total 8 too, so the whole table is withheld but its zeros.
    assert a["disputes"]["rows"] == {c: [None] * 6} and a["disputes"]["total"] == [None] * 6
    assert a["disputes_decided"] is None and a["median_seconds_to_decision"] is None
    assert a["outcomes"]["rows"] == {c: [None, 12, 0, 0, 0, None, 17]}
    assert a["outcomes"]["total"] == [None, 12, 0, 0, 0, None, 17]
    assert a["blocked_or_removed_percent"] is None  # it would give away the withheld blocked count
    assert a["partners_reporting"] is None and a["partner_suspensions"] is None
    assert a["reports_received"] == 15 and a["median_seconds_to_action"] == 420
    files = sc.members(data)
    assert b"withheld" in files["aggregates.csv"]
    assert json.loads(files["manifest.json"])["suppression"] == {"rule": "hashfed/small-cells/v1", "threshold": 10}


def test_one_small_cell() -> None:
    table = suppress_table([[20, 30], [40, 5]], 10, 2)
    # The 5 takes the 40 beside it and the 30 above it, and those take the 20: every margin stays published.
    assert table == [[None, None, 50], [None, None, 45], [60, 35, 95]]
    _no_line_with_one_withheld(table)


def test_a_small_cell_recoverable_from_a_total() -> None:
    # Row total 25 = 20 + 5: publishing 20 and 25 would give away the 5.
    table = suppress_table([[20, 5], [30, 30]], 10, 2)
    assert table[0][1] is None
    assert table[0][0] is None or table[0][2] is None
    _no_line_with_one_withheld(table)


def test_a_row_of_small_cells() -> None:
    table = suppress_table([[3, 4, 2], [30, 40, 50]], 10, 3)
    assert table[0][:3] == [None, None, None]
    assert table[0][3] is None  # the row total is 9: small itself
    _no_line_with_one_withheld(table)
    # Each column total would give a small cell away through the large cell beside it: those go too.
    assert table[1] == [None, None, None, None]
    assert table[2] == [33, 44, 52, 129]


def test_an_empty_period_publishes_its_zero_totals() -> None:
    raw = Aggregator().raw()  # a period with nothing in it
    published = publish(raw, 10)
    assert published["signals"]["rows"] == {} and published["outcomes"]["rows"] == {}
    assert published["outcomes"]["total"] == [0] * (len(published["outcomes"]["columns"]))
    assert suppress_table([], 10, 3) == [[0, 0, 0, 0]]


def _no_line_with_one_withheld(table: list[list[int | None]]) -> None:
    for line in [*table, *map(list, zip(*table, strict=True))]:
        assert sum(v is None for v in line) != 1, table


def test_a_tampered_csv_is_refused(session: Session, quarter: sc.Quarter, tmp_path: Path) -> None:
    data = _bundle(session, quarter)
    files = sc.members(data)
    files["records.csv"] = files["records.csv"].replace(b"removed", b"no_action", 1)
    report = _verify(tmp_path, sc.rezip(files), _pin(session))
    assert not report.ok and "records.csv" in report.verdict


def test_a_csv_that_differs_from_its_json_is_refused_even_when_signed(
    session: Session, quarter: sc.Quarter, tmp_path: Path
) -> None:
    data = _bundle(session, quarter)
    csv = sc.members(data)["records.csv"].replace(b"removed", b"no_action", 1)
    forged = sc.forge(data, {"records.csv": csv}, quarter.keys.signer("export"))
    report = _verify(tmp_path, forged, _pin(session))
    assert not report.ok and "records.csv row" in report.verdict


def test_a_record_whose_entry_is_not_in_the_log_is_refused(
    session: Session, quarter: sc.Quarter, tmp_path: Path
) -> None:
    data = _bundle(session, quarter)
    files = sc.members(data)
    lines = files["records.jsonl"].splitlines(keepends=True)
    invented = json.loads(lines[0])
    invented["report_sha256"] = "0" * 64  # a report the log never recorded, in an existing entry
    files["records.jsonl"] = b"".join([json_line(invented), *lines])
    from audit.exports import RECORD_FIELDS, csv_lines

    rows = [json.loads(x) for x in files["records.jsonl"].splitlines()]
    files["records.csv"] = csv_lines(RECORD_FIELDS, rows).encode()
    forged = sc.forge(data, files, quarter.keys.signer("export"))
    report = _verify(tmp_path, forged, _pin(session))
    assert not report.ok and "LogError" in report.verdict and "left out, added or altered" in report.verdict


def test_a_wrong_export_key_is_refused(session: Session, quarter: sc.Quarter, tmp_path: Path) -> None:
    data = _bundle(session, quarter)
    for signer in (Ed25519Signer.generate(), quarter.keys.signer("batch")):
        report = _verify(tmp_path, sc.forge(data, {}, signer), _pin(session))
        assert not report.ok and "export key" in report.verdict
    assert _verify(tmp_path, sc.forge(data, {}, quarter.keys.signer("export")), _pin(session)).ok


def test_another_period_s_checkpoint_is_refused(session: Session, quarter: sc.Quarter, tmp_path: Path) -> None:
    data = _bundle(session, quarter)
    # A checkpoint signed while the period was still open: smaller than the period's entries.
    from hub.transparency.models import AuditCheckpoint

    first = session.query(AuditCheckpoint).order_by(AuditCheckpoint.size).first()
    assert first is not None
    manifest = json.loads(sc.members(data)["manifest.json"])
    manifest["checkpoint"]["size"] = first.size
    from audit.merkle import b64encode

    manifest["checkpoint"]["root"] = b64encode(first.root)
    forged = sc.forge(data, {"checkpoint.note": first.note.encode()}, quarter.keys.signer("export"),
                      checkpoint=manifest["checkpoint"])
    report = _verify(tmp_path, forged, _pin(session))
    assert not report.ok and "another period" in report.verdict


def test_no_hash_value_or_content_reference_is_in_a_bundle(session: Session, quarter: sc.Quarter) -> None:
    data = _bundle(session, quarter, threshold=1)
    texts = [data, *sc.members(data).values()]
    secrets = (quarter.values + [v.upper() for v in quarter.values] + quarter.content_refs + quarter.pdq_ids
               + quarter.notes)
    for secret in secrets:
        for blob in texts:
            assert secret.encode() not in blob, secret


def test_a_bundle_is_written_again_byte_for_byte(session: Session, quarter: sc.Quarter) -> None:
    with sc.at(sc.EXPORTED):
        row = service.create(session, quarter.keys, sc.Q3, actor=Actor.operator(), partner_id=None, threshold=10)
    first, second = io.BytesIO(), io.BytesIO()
    service.write(session, quarter.keys, row, first)
    service.write(session, quarter.keys, row, second)
    assert first.getvalue() == second.getvalue()
    assert hashlib.sha256(first.getvalue()).hexdigest() == row.bundle_sha256


def test_an_open_period_is_refused(session: Session, quarter: sc.Quarter) -> None:
    from hub.errors import ConflictError

    with sc.at(sc.EXPORTED), pytest.raises(ConflictError):
        service.create(session, quarter.keys, parse_period("2026-Q4"), actor=Actor.operator(), partner_id=None,
                       threshold=10)


def test_the_api_creates_lists_and_serves_bundles(
    session: Session, quarter: sc.Quarter, client: FlaskClient, tmp_path: Path
) -> None:
    token = f.token(session, quarter.regulator, ["exports:read"])
    platform = f.token(session, quarter.a, ["reports:write"])
    with sc.at(sc.EXPORTED):
        assert client.post("/v1/exports", json={"period": "2026-Q3"}, headers=f.auth(platform)).status_code == 403
        bad = client.post("/v1/exports", json={"period": "2026-13"}, headers=f.auth(token))
        assert bad.status_code == 422
        made = client.post("/v1/exports", json={"from": "2026-07-01", "to": "2026-10-01"}, headers=f.auth(token))
        assert made.status_code == 201, made.json
        body = made.json
        assert body["aggregates"]["reports_received"] == 15
        listed = client.get("/v1/exports", headers=f.auth(token)).json["exports"]
        assert [e["id"] for e in listed] == [body["id"]]
        got = client.get(f"/v1/exports/{body['id']}", headers=f.auth(token))
        assert got.status_code == 200 and got.mimetype == "application/zip"
        assert hashlib.sha256(got.data).hexdigest() == body["bundle_sha256"]
        assert client.get("/v1/exports/nope", headers=f.auth(token)).status_code == 404
    path = tmp_path / "b.zip"
    path.write_bytes(got.data)
    assert audit_cli.main(["verify-export", str(path), "--keyset-sha256", _pin(session)]) == 0
    assert audit_cli.main(["verify-export", str(path), "--keyset-sha256", "0" * 64]) == 1
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["period"]["from"] == "2026-07-01T00:00:00Z"


def _lines_of(files: dict[str, bytes], name: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in files[name].splitlines()]


def _put_rows(files: dict[str, bytes], stem: str, rows: list[dict]) -> None:  # type: ignore[type-arg]
    from audit.exports import DISPUTE_FIELDS, RECORD_FIELDS, SIGNAL_FIELDS, csv_lines

    columns = {"records": RECORD_FIELDS, "signals": SIGNAL_FIELDS, "disputes": DISPUTE_FIELDS}[stem]
    files[f"{stem}.jsonl"] = b"".join(json_line(r) for r in rows)
    files[f"{stem}.csv"] = csv_lines(columns, rows).encode()


def test_a_tampered_dispute_entry_is_refused(session: Session, quarter: sc.Quarter, tmp_path: Path) -> None:
    """A lying hub edits the dispute.open entry of X3 (and its row to match) and signs again: the proof fails."""
    import base64

    data = _bundle(session, quarter)
    files = sc.members(data)
    lines = files["entries.jsonl"].splitlines(keepends=True)
    for i, line in enumerate(lines):
        row = json.loads(line)
        entry = json.loads(base64.b64decode(row["entry"]))
        if entry["action"] == "dispute.open" and entry["time"] == "2026-07-10T14:00:00Z":
            entry["details"]["reason"] = "consent"
            from audit.canonical import canonical_json

            lines[i] = json.dumps({"entry": base64.b64encode(canonical_json(entry)).decode(), "seq": row["seq"]},
                                  separators=(",", ":")).encode() + b"\n"
            break
    else:
        raise AssertionError("no dispute.open entry in the period")
    files["entries.jsonl"] = b"".join(lines)
    disputes = _lines_of(files, "disputes.jsonl")
    for d in disputes:
        if d["opened_seq"] == row["seq"]:
            d["reason"] = "consent"
    _put_rows(files, "disputes", disputes)
    report = _verify(tmp_path, sc.forge(data, files, quarter.keys.signer("export")), _pin(session))
    assert not report.ok and "RootMismatchError" in report.verdict, report.verdict


@pytest.mark.parametrize("edit", ["event", "seconds", "collection", "drop", "opened_at"])
def test_a_forged_dispute_event_is_refused(
    session: Session, quarter: sc.Quarter, tmp_path: Path, edit: str
) -> None:
    data = _bundle(session, quarter)
    files = sc.members(data)
    disputes = _lines_of(files, "disputes.jsonl")
    upheld = next(d for d in disputes if d["event"] == "upheld")
    if edit == "event":
        upheld["event"] = "rejected"
    elif edit == "seconds":
        upheld["seconds"] -= 86400  # a faster decision than the log shows
    elif edit == "collection":
        upheld["collection"] = "another-collection"
    elif edit == "opened_at":
        upheld["opened_at"] = "2026-07-01T00:00:00Z"
    else:
        disputes.remove(upheld)
    _put_rows(files, "disputes", disputes)
    report = _verify(tmp_path, sc.forge(data, files, quarter.keys.signer("export")), _pin(session))
    assert not report.ok and "LogError" in report.verdict, report.verdict


def test_a_dispute_aggregate_edited_in_the_json_is_refused(
    session: Session, quarter: sc.Quarter, tmp_path: Path
) -> None:
    data = _bundle(session, quarter, threshold=1)
    files = sc.members(data)
    doc = json.loads(files["aggregates.json"])
    doc["aggregates"]["median_seconds_to_decision"] = 3600
    from audit.canonical import canonical_json

    files["aggregates.json"] = canonical_json(doc)
    report = _verify(tmp_path, sc.forge(data, files, quarter.keys.signer("export")), _pin(session))
    assert not report.ok and "aggregates.json differs" in report.verdict
    doc["aggregates"]["median_seconds_to_decision"] = 61 * 86400 + 8 * 3600
    doc["aggregates"]["disputes"]["rows"][quarter.c.id][2] = 0  # no upheld dispute
    files["aggregates.json"] = canonical_json(doc)
    report = _verify(tmp_path, sc.forge(data, files, quarter.keys.signer("export")), _pin(session))
    assert not report.ok and "aggregates.json differs" in report.verdict


def test_a_decision_whose_opening_is_not_carried_is_refused(
    session: Session, quarter: sc.Quarter, tmp_path: Path
) -> None:
    """X1 and X2 were opened before the period: without their dispute.open entries the times are unproved."""
    data = _bundle(session, quarter)
    files = sc.members(data)
    proof = json.loads(files["proof.json"])
    dropped = proof["earlier"].pop(0)
    lines = [x for x in files["entries.jsonl"].splitlines(keepends=True) if json.loads(x)["seq"] != dropped]
    files["entries.jsonl"] = b"".join(lines)
    from audit.canonical import canonical_json

    files["proof.json"] = canonical_json(proof)
    report = _verify(tmp_path, sc.forge(data, files, quarter.keys.signer("export")), _pin(session))
    assert not report.ok and "dispute.open entry the bundle does not carry" in report.verdict, report.verdict


def test_the_fast_row_forms_are_the_reference_forms() -> None:
    from audit.exports import DISPUTES, RECORDS, csv_lines, record_values

    awkward = 'surface, "quoted"\r\nand more é'
    row = record_values(7, "ab" * 32, "cd" * 32, 2, "removed", "2026-07-01T00:00:00Z", "p,1", "c\"1", "ncii", "ef",
                        "pdq", awkward, "2026-06-30T23:59:00Z", None, True, False)
    as_dict = RECORDS.as_dict(row)
    assert RECORDS.json(row).encode() == json_line(as_dict)
    assert RECORDS.csv(row) == csv_lines(RECORDS.columns, [as_dict], header=False)
    assert RECORDS.header == csv_lines(RECORDS.columns, [])
    import csv

    assert RECORDS.parse(next(csv.reader([RECORDS.csv(row)]))) == row
    d = (9, "upheld", "aa", "c", "false_positive", "partner", 3, "2026-06-20T01:00:00Z", None)
    assert DISPUTES.json(d).encode() == json_line(DISPUTES.as_dict(d))
    assert DISPUTES.parse(next(csv.reader([DISPUTES.csv(d)]))) == d


def test_the_multi_leaf_proof_with_earlier_leaves_leads_to_the_root() -> None:
    import random

    from audit.exports import multiproof_ranges, multiproof_root
    from audit.merkle import leaf_hash, root_of

    rng = random.Random(7)
    for _ in range(300):
        size = rng.randint(2, 70)
        lo = rng.randint(1, size - 1)
        hi = rng.randint(lo + 1, size)
        earlier = sorted(rng.sample(range(lo), rng.randint(0, min(lo, 5))))
        leaves = [leaf_hash(b"%d" % i) for i in range(size)]
        ranges = multiproof_ranges(lo, hi, size, earlier)
        hashes = [root_of(leaves[a:b]) for a, b in ranges]
        carried = [leaves[i] for i in earlier] + leaves[lo:hi]
        assert multiproof_root(lo, carried, size, hashes, earlier) == root_of(leaves)
        if earlier:  # leaving an earlier leaf out needs another proof: this one no longer leads to the root
            with pytest.raises(Exception):  # noqa: B017 - a ProofError or another root, either refuses
                assert multiproof_root(lo, carried[1:], size, hashes, earlier[1:]) == root_of(leaves)
