"""The public transparency page: server-rendered HTML with SVG bars, one stylesheet of its own, no script.

The page shows only what a published bundle's aggregates.json publishes (withheld cells stay withheld).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from jinja2 import Environment

from audit.canonical import format_time
from audit.exports import OUTCOMES
from hub.exports.models import Export

# Its own stylesheet from the hub only; nothing runs, nothing is framed, no form posts anywhere.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)

CSS = """body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; padding: 0 1rem;
  color: #1b1b1b; line-height: 1.5; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ccc; padding: .25rem .75rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
code { word-break: break-all; }
.withheld { color: #666; font-style: italic; }
"""

_LABELS = {
    "reports_received": "Matches reported",
    "actioned": "Matches acted on (blocked, removed or restricted)",
    "blocked_or_removed_percent": "Decisions that blocked or removed content (%)",
    "automated_detection_percent": "Matches found by automated detection (%)",
    "automated_decision_percent": "Decisions taken automatically (%)",
    "median_seconds_to_action": "Median time from match to action (seconds)",
    "p90_seconds_to_action": "90th percentile time from match to action (seconds)",
    "partners_receiving": "Partners receiving the feed",
    "partners_acknowledging": "Partners acknowledging updates",
    "partners_reporting": "Partners reporting matches",
    "partner_suspensions": "Partner suspensions",
    "disputes_decided": "Disputes decided (upheld, rejected or released)",
    "median_seconds_to_decision": "Median time from dispute to decision (seconds)",
}

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Transparency report{% if row %}: {{ row.period_label }}{% endif %}</title>
<link rel="stylesheet" href="/transparency/page.css">
</head>
<body>
{% macro cell(v) %}{% if v is none %}<span class="withheld">withheld</span>{% else %}{{ v }}{% endif %}{% endmacro %}
<main>
<h1>Transparency report</h1>
{% if not row %}
<p id="none">No period has been published yet.</p>
{% else %}
<p>Period <strong id="period">{{ row.period_label }}</strong>: from {{ start }} to {{ end }} (end excluded),
drawn at signed audit checkpoint {{ row.checkpoint_size }}. Counts from 1 to {{ row.threshold - 1 }} are withheld,
with further cells withheld wherever they could be worked out from totals.</p>

<h2>Matches by outcome</h2>
<svg id="outcomes-chart" role="img" aria-labelledby="outcomes-title" width="640" height="{{ 28 * bars|length + 10 }}"
 viewBox="0 0 640 {{ 28 * bars|length + 10 }}" xmlns="http://www.w3.org/2000/svg">
<title id="outcomes-title">Decisions by outcome in {{ row.period_label }}</title>
{% for label, value, width in bars %}
<text x="0" y="{{ 28 * loop.index0 + 20 }}" font-size="14">{{ label }}</text>
{% if value is none %}
<text x="170" y="{{ 28 * loop.index0 + 20 }}" font-size="14" fill="#666">withheld</text>
{% else %}
<rect x="170" y="{{ 28 * loop.index0 + 6 }}" width="{{ width }}" height="18" fill="#2a6f97"></rect>
<text x="{{ 176 + width }}" y="{{ 28 * loop.index0 + 20 }}" font-size="14">{{ value }}</text>
{% endif %}
{% endfor %}
</svg>

<h2>Summary</h2>
<table id="summary">
<tr><th>Measure</th><th>Value</th></tr>
{% for label, value in summary %}
<tr><td>{{ label }}</td><td>{{ cell(value) }}</td></tr>
{% endfor %}
</table>

<h2>Hashes by collection and type</h2>
<table id="signals">
<tr><th>Collection / type</th>{% for c in signal_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for name, cells in signal_rows %}
<tr><td>{{ name }}</td>{% for v in cells %}<td>{{ cell(v) }}</td>{% endfor %}</tr>
{% endfor %}
</table>

{% if dispute_rows %}
<h2>Disputes by collection</h2>
<table id="disputes">
<tr><th>Collection</th>{% for c in dispute_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for name, cells in dispute_rows %}
<tr><td>{{ name }}</td>{% for v in cells %}<td>{{ cell(v) }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endif %}

<h2>Verify it yourself</h2>
<p>The bundle holds every record and audit entry these figures rest on, a signed audit checkpoint and inclusion
proof, and a manifest signed with the hub's export key. SHA-256 of the bundle:
<code id="digest">{{ row.bundle_sha256 }}</code></p>
<p><a id="download" href="/transparency/bundle">Download the bundle</a> ({{ row.bundle_bytes }} bytes), then run
<code>hashfed-audit verify-export BUNDLE --keyset-sha256 PIN</code> with the key set digest you trust.</p>
{% endif %}
</main>
</body>
</html>
"""

_ENV = Environment(autoescape=True, keep_trailing_newline=True)
_PAGE = _ENV.from_string(_TEMPLATE)


def render(row: Export | None) -> str:
    """The page for the latest published export (or the page saying none is published)."""
    if row is None:
        return _PAGE.render(row=None)
    published: dict[str, Any] = json.loads(row.aggregates)
    totals = published["outcomes"]["total"]
    known = [v for v in totals[: len(OUTCOMES)] if v is not None]
    top = max(known, default=0) or 1
    bars = [
        (outcome.replace("_", " "), v, 0 if v is None else max(1, 400 * v // top))
        for outcome, v in zip(OUTCOMES, totals, strict=False)
    ]
    # Exports made before a figure existed lack it: those rows are left out.
    summary = [(label, published[key]) for key, label in _LABELS.items() if key in published]
    signal_rows = [*published["signals"]["rows"].items(), ("total", published["signals"]["total"])]
    disputes = published.get("disputes")
    dispute_rows = [*disputes["rows"].items(), ("total", disputes["total"])] if disputes else []
    return _PAGE.render(
        row=row,
        start=format_time(row.period_from),
        end=format_time(row.period_to),
        bars=bars,
        summary=summary,
        signal_columns=published["signals"]["columns"],
        signal_rows=signal_rows,
        dispute_columns=disputes["columns"] if disputes else [],
        dispute_rows=dispute_rows,
    )


def response(html: str) -> Response:
    out = Response(html, mimetype="text/html")
    out.headers["Content-Security-Policy"] = CSP
    out.headers["Cache-Control"] = "public, max-age=60"
    return out
