"""`hashfed-partner hash` and `hashfed-partner match`: the reference matcher on the partner's own machine.

Media never leaves the machine: files are hashed here (PDQ for images, vPDQ and video MD5 for videos, MD5,
SHA-256) and matched against the index kept from the verified mirror (partners/client/indexing.py). Needs the
`[match]` extra (numpy, numba, pdqhash, Pillow, PyAV); without it both commands say so instead of failing on
an import.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select

from partners.cli.context import Context, send_reports
from partners.client.errors import PartnerError
from partners.client.indexing import LocalIndex, index_dir
from partners.client.mirror import signals as mirror_signals
from partners.client.reports import QUEUE_FILE, MatchedSignal, ReportQueue

if TYPE_CHECKING:
    from partners.matching.hashing import HashResult
    from partners.matching.matcher import Match
    from partners.matching.vpdq import VideoMatch

_HEX = re.compile(r"[0-9a-fA-F]+")
# A bar only when it helps: several files, and a person watching stderr.
PROGRESS_MIN_FILES = 2


def _require_match_extra() -> None:
    try:
        import numpy  # noqa: F401 - probing for the extra
        import pdqhash  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as e:
        raise click.ClickException(
            f"the reference matcher needs the [match] extra: pip install 'hashfed[match]' ({e.name} is missing)"
        ) from e


def _files(paths: Sequence[str]) -> Iterator[tuple[str, HashResult]]:
    """Hash files one by one, with a tqdm bar over many files when stderr is a terminal."""
    from partners.matching.hashing import hash_file  # pdqhash and Pillow come with [match]: loaded only to hash

    bar = None
    if len(paths) >= PROGRESS_MIN_FILES and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="hashing", unit="file", leave=False, file=sys.stderr)
    try:
        for path in paths:
            yield path, hash_file(path)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


# --- hash ---------------------------------------------------------------------------------------------------


@click.command("hash")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (JSON lines).")
def hash_command(files: Sequence[str], as_json: bool) -> None:
    """PDQ (with quality) of an image or vPDQ and video MD5 of a video, MD5 and SHA-256 of each FILE as
    labelled lines; exit status 1 if any file failed."""
    _require_match_extra()
    failed = 0
    for n, (path, r) in enumerate(_files(files)):
        if r.error is not None:
            failed += 1
        if as_json:
            row: dict[str, Any] = {"file": path, "pdq": r.pdq, "quality": r.quality, "md5": r.md5, "sha256": r.sha256}
            if r.vpdq is not None:
                row = {"file": path, "vpdq": r.vpdq, "video_md5": r.md5, "md5": r.md5, "sha256": r.sha256}
            if r.error is not None:
                row["error"] = r.error
            click.echo(json.dumps(row))
            continue
        if r.md5 is None:  # unreadable: no hash at all
            click.echo(f"{path}: error: {r.error}", err=True)
            continue
        if n:
            click.echo("")
        click.echo(f"file: {path}")
        if r.vpdq is not None:
            click.echo(f"vpdq: {r.vpdq}")
            click.echo(f"video_md5: {r.md5}")
        else:
            click.echo(f"pdq: {r.pdq or '-'}")
            click.echo(f"quality: {'-' if r.quality is None else r.quality}")
        click.echo(f"md5: {r.md5}")
        click.echo(f"sha256: {r.sha256}")
        if r.error is not None:
            click.echo(f"{path}: error: {r.error}", err=True)
    if failed:
        click.echo(f"{failed} of {len(files)} file(s) could not be hashed completely", err=True)
        sys.exit(1)


# --- match --------------------------------------------------------------------------------------------------


@dataclass
class Query:
    """One argument: a hash given directly, or a file hashed here (then up to three hashes)."""

    arg: str
    hashes: list[tuple[str, str]] = field(default_factory=list)  # (type, lowercase hex)
    quality: int | None = None
    error: str | None = None


def classify(arg: str, hex64_type: str) -> tuple[str, str] | None:
    """(type, hex) if `arg` looks like a hash: 32 hex = md5, 64 hex = `hex64_type` (pdq or sha256)."""
    if not _HEX.fullmatch(arg):
        return None
    if len(arg) == 32:
        return "md5", arg.lower()
    if len(arg) == 64:
        return hex64_type, arg.lower()
    return None


def _queries(args: Sequence[str], hex64_type: str) -> Iterator[Query]:
    direct = {a: classify(a, hex64_type) for a in args}
    files = [a for a in args if direct[a] is None]
    hashed = _files(files)
    for a in args:
        found = direct[a]
        if found is not None:
            yield Query(a, [found])
            continue
        _, r = next(hashed)
        q = Query(a, quality=r.quality, error=r.error)
        video = r.md5 if r.vpdq is not None else None
        found_hashes = (("pdq", r.pdq), ("vpdq", r.vpdq), ("video_md5", video), ("md5", r.md5), ("sha256", r.sha256))
        q.hashes = [(t, v) for t, v in found_hashes if v is not None]
        yield q


def _effective_threshold(index: LocalIndex, asked: int | None, collections: Sequence[str]) -> int | None:
    """The query's threshold if it lowers every collection's; a higher one is refused with a message."""
    if asked is None:
        return None
    if not 0 <= asked <= 64:
        raise click.BadParameter("a PDQ threshold is 0..64", param_hint="--threshold")
    for c in collections:
        limit = index.thresholds.get(c)
        if limit is not None and asked > limit:
            raise click.BadParameter(
                f"collection {c} sets PDQ threshold {limit} in its signed descriptor; --threshold may only "
                f"lower it (use --collection to match only collections that allow {asked})",
                param_hint="--threshold",
            )
    return asked


def _open_index(ctx: Context) -> LocalIndex:
    config = ctx.config()
    mirror = ctx.mirror(config)
    try:
        return LocalIndex.open(mirror, index_dir(ctx.home))
    except PartnerError as e:
        raise click.ClickException(str(e)) from e


@click.command("match")
@click.argument("items", nargs=-1, required=True, metavar="FILE_OR_HASH...")
@click.option(
    "--type",
    "hex64_type",
    type=click.Choice(["pdq", "sha256"]),
    default="pdq",
    show_default=True,
    help="What a 64-hex-digit argument is (32 hex digits are always MD5; anything else is a file).",
)
@click.option("--threshold", type=int, default=None, help="A stricter PDQ distance than the collections' own.")
@click.option("--collection", "only", multiple=True, help="Only these collections (default: every one synced).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query hash (JSON lines).")
@click.option(
    "--report",
    "report",
    is_flag=True,
    help="Report every match to the hub as pending_review (queued locally; retried if the hub is down).",
)
@click.option(
    "--ref",
    "content_ref",
    default=None,
    help="Your own reference for the content (with --report and one item; default: the argument itself). "
    "The hub stores only a keyed digest of it.",
)
@click.option(
    "--surface",
    type=click.Choice(["upload", "existing_content", "account"]),
    default="upload",
    show_default=True,
    help="Where the content was found (with --report).",
)
@click.pass_obj
def match_command(
    ctx: Context,
    items: Sequence[str],
    hex64_type: str,
    threshold: int | None,
    only: Sequence[str],
    as_json: bool,
    report: bool,
    content_ref: str | None,
    surface: str,
) -> None:
    """Match files (hashed here; PDQ, or vPDQ and video MD5, MD5 and SHA-256) or hashes against the synced
    collections.

    Thresholds come from each collection's signed descriptor; --threshold may only lower them. A video
    matches by vPDQ's rule: at least P % of its unique frames and of the stored video's are matched (P from
    the descriptor); a stored video that reaches P on one side only is listed as `query-only` (the file is a
    clip of it) or `stored-only` (it is a clip of the file), and not reported. Exit status
    1 if any file could not be hashed (its other hashes are still matched). With --report, each matched
    item becomes `pending_review` reports; update them later with `hashfed-partner report --ref ...`.
    """
    _require_match_extra()
    if content_ref is not None and (not report or len(items) != 1):
        raise click.UsageError("--ref names one item's content: give it with --report and a single item")
    index = _open_index(ctx)
    found_per_item: dict[str, list[Match]] = {}
    unknown = [c for c in only if c not in index.heads]
    if unknown:
        raise click.BadParameter(f"not synced: {', '.join(unknown)}", param_hint="--collection")
    collections = list(only) or index.collections()
    asked = _effective_threshold(index, threshold, collections)
    if not as_json:
        click.echo(f"{'type':6}  {'collection':36}  {'signal':36}  {'dist':>4}  query")
    failed = 0
    for q in _queries(items, hex64_type):
        if q.error is not None:
            failed += 1
            if as_json:
                click.echo(json.dumps({"query": q.arg, "error": q.error}))
            else:
                click.echo(f"{q.arg}: error: {q.error}", err=True)
        for kind, value in q.hashes:
            if kind == "vpdq":
                videos = index.matcher.match_vpdq([value], threshold=asked, collections=collections)[0]
                found_per_item.setdefault(q.arg, []).extend(_video_matches(videos))
                _echo_videos(q.arg, value, videos, as_json)
                continue
            found = index.matcher.match(kind, [value], threshold=asked, collections=collections)[0]
            found_per_item.setdefault(q.arg, []).extend(found)
            if as_json:
                row: dict[str, Any] = {"query": q.arg, "type": kind, "value": value}
                if kind == "pdq" and q.quality is not None:
                    row["quality"] = q.quality
                row["matches"] = [
                    {"collection": m.collection, "signal": str(m.signal_id), "distance": m.distance} for m in found
                ]
                click.echo(json.dumps(row))
                continue
            for m in found:
                click.echo(f"{kind:6}  {m.collection:36}  {m.signal_id!s:36}  {m.distance:>4}  {q.arg}")
    if not as_json and not index.heads:
        click.echo("the mirror holds no collection yet: run `hashfed-partner sync` first", err=True)
    if report:
        _report_matches(ctx, index, found_per_item, content_ref, surface)
    if failed:
        click.echo(f"{failed} file(s) could not be hashed completely", err=True)
        sys.exit(1)


def _video_matches(videos: list[VideoMatch]) -> list[Match]:
    """The videos matched by vPDQ's rule as the matcher's `Match`: distance = 100 - the smaller share."""
    from partners.matching.matcher import Match  # the [match] extra is checked before any match

    return [
        Match(math.ceil(100 - min(v.query_percent, v.stored_percent)), v.collection, v.signal_id)
        for v in videos
        if v.both_sides
    ]


def _echo_videos(arg: str, value: str, videos: list[VideoMatch], as_json: bool) -> None:
    if as_json:
        rows = [
            {"collection": v.collection, "signal": str(v.signal_id), "query_percent": v.query_percent,
             "stored_percent": v.stored_percent, "match": v.both_sides}
            for v in videos
        ]  # fmt: skip
        click.echo(json.dumps({"query": arg, "type": "vpdq", "value": value, "matches": rows}))
        return
    for v in videos:
        side = "" if v.both_sides else ("  query-only" if v.query_percent >= v.stored_percent else "  stored-only")
        shares = f"{v.query_percent:.0f}%/{v.stored_percent:.0f}%"
        click.echo(f"{'vpdq':6}  {v.collection:36}  {v.signal_id!s:36}  {shares:>4}  {arg}{side}")


def _report_matches(
    ctx: Context, index: LocalIndex, found: dict[str, list[Match]], content_ref: str | None, surface: str
) -> None:
    """Queue one pending_review report per (item, matched signal), then try to send the queue."""
    queue = ReportQueue.open(ctx.home / QUEUE_FILE)
    try:
        queued = 0
        with index.mirror.engine.connect() as conn:
            for item, matches in found.items():
                # One report per signal, at its smallest distance (PDQ and an exact hash may both match).
                best: dict[tuple[str, str], int] = {}
                for m in matches:
                    key = (m.collection, str(m.signal_id))
                    best[key] = min(m.distance, best.get(key, m.distance))
                matched = []
                for (collection, signal_id), distance in sorted(best.items()):
                    # The seq in which this kit received the signal: the batch that added it.
                    seq = conn.scalar(
                        select(mirror_signals.c.added_seq).where(
                            mirror_signals.c.collection == collection, mirror_signals.c.id == signal_id
                        )
                    )
                    if seq is not None:
                        matched.append(MatchedSignal(collection, signal_id, int(seq), distance))
                if matched:
                    queue.enqueue_matches(matched, content_ref=content_ref or item, surface=surface)
                    queued += len(matched)
        click.echo(f"queued {queued} pending_review report(s)", err=True)
        result = send_reports(ctx.config(), queue)
    except PartnerError as e:
        raise click.ClickException(str(e)) from e
    finally:
        queue.close()
    click.echo(f"reports sent {result.sent}, rejected {result.rejected}, waiting {result.waiting}", err=True)
    if result.error:
        click.echo(f"the hub was not reached ({result.error}); reports are sent on the next run", err=True)


COMMANDS = (hash_command, match_command)
