"""Every table of the hub on one metadata: each domain's `models` module imported by name, so Alembic sees them all.

A new domain with tables adds its models module here; `tests/hub/test_migrations.py` fails until it does.
"""

from __future__ import annotations

from hub.compat import models as compat
from hub.db import Base
from hub.exports import models as exports
from hub.feed import models as feed
from hub.governance import models as governance
from hub.identity import models as identity
from hub.reports import models as reports
from hub.transparency import models as transparency
from hub.upstreams import models as upstreams
from hub.webhooks import models as webhooks

# The modules above define the tables; naming them keeps the imports (and documents what is gathered).
MODULES = (identity, transparency, feed, reports, webhooks, governance, exports, compat, upstreams)
metadata = Base.metadata
