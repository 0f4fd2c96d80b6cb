"""OAuth 2.0 client credentials for the kit, through authlib's requests client.

`private_key_jwt` (RFC 7523, a private JWK on disk) or `client_secret_basic` (a secret file). Tokens are
fetched on first use and renewed `leeway` seconds before they expire (authlib's `ensure_active_token`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT

from partners.client.config import PartnerConfig, check_secret_file
from partners.client.errors import AuthError, ConfigError

LEEWAY_S = 60  # seconds before expiry at which a token is renewed
_ALGS = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


def load_jwk(path: str) -> tuple[Any, str]:
    """A private JWK from a file (0600): the key object authlib signs with, and its algorithm."""
    from joserfc.jwk import JWKRegistry

    check_secret_file(path)
    try:
        data = json.loads(Path(path).read_text())
        key = JWKRegistry.import_key(data)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a private JWK: {e}") from e
    if not key.is_private:
        raise ConfigError(f"{path} holds a public key; private_key_jwt needs the private one")
    alg = data.get("alg") or _ALGS.get(data.get("kty", ""), "")
    if not alg:
        raise ConfigError(f"{path}: cannot tell the signing algorithm of a {data.get('kty')!r} key")
    return key, alg


def read_secret(path: str) -> str:
    """A client secret from a file (0600), without its trailing newline."""
    check_secret_file(path)
    return Path(path).read_text().strip()


class _Session(OAuth2Session):  # authlib ships no type hints: OAuth2Session is Any
    """An OAuth2Session that fetches its first token lazily and turns OAuth failures into `AuthError`."""

    def request(self, method: str, url: str, withhold_token: bool = False, auth: Any = None, **kwargs: Any) -> Any:
        if not withhold_token and auth is None and not self.token:
            self.fetch()
        try:
            return super().request(method, url, withhold_token=withhold_token, auth=auth, **kwargs)
        except AuthError:
            raise
        except Exception as e:
            if e.__class__.__module__.startswith(("authlib", "joserfc")):
                raise AuthError(f"token renewal failed: {e.__class__.__name__}") from e
            raise

    def fetch(self) -> None:
        """Fetch a token with the client credentials grant."""
        try:
            self.fetch_token(self.metadata["token_endpoint"], grant_type="client_credentials")
        except Exception as e:
            if e.__class__.__module__.startswith(("authlib", "joserfc", "requests")):
                raise AuthError(f"cannot obtain an access token: {e}") from e
            raise


def make_session(config: PartnerConfig) -> OAuth2Session:
    """An authlib session for the configured client; the first request fetches a token."""
    common: dict[str, Any] = {
        "token_endpoint": config.token_endpoint,
        "grant_type": "client_credentials",
        "scope": config.scope,
        "leeway": LEEWAY_S,
    }
    if config.key_path:
        key, alg = load_jwk(config.key_path)
        session = _Session(config.client_id, key, token_endpoint_auth_method="private_key_jwt", **common)  # noqa: S106 - a method name
        session.register_client_auth_method(PrivateKeyJWT(config.token_endpoint, alg=alg))
        return session
    if config.secret_path is None:
        raise ConfigError("no --key and no --secret-file configured")
    secret = read_secret(config.secret_path)
    return _Session(config.client_id, secret, token_endpoint_auth_method="client_secret_basic", **common)  # noqa: S106
