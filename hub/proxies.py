"""Forwarded headers are believed only from the reverse proxies the operator names.

A TLS-terminating proxy tells the hub the client's address and scheme in `X-Forwarded-*`. Anyone can send those
headers, so they count only when the connection itself comes from a configured proxy address; from anyone else
they are removed before the app sees the request. Otherwise a client could claim HTTPS (and send a secret over
plain HTTP) or claim another address (and take another client's rate-limit bucket).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Every header a proxy (or a client pretending to be one) may use to describe the original request.
FORWARDED_KEYS = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_X_REAL_IP",
)


def parse_networks(raw: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; a ValueError names the one that is neither."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in raw if item.strip())


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests from `proxies`, forwarded headers dropped for all others."""

    def __init__(self, app: Any, proxies: tuple[Network, ...], hops: int) -> None:
        self.app = app
        self.proxies = proxies
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    def from_proxy(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            peer = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.proxies)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.proxies and self.from_proxy(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        for key in FORWARDED_KEYS:
            environ.pop(key, None)
        return self.app(environ, start_response)
