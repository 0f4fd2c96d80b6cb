"""Identity: partners (the tenants), their OAuth clients and tokens, people, and the request principal.

Below every domain but transparency: any domain's routes use `hub.identity.auth` for the caller and its scopes."""
