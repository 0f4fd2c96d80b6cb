"""Transparency: the audit log, its routes and proofs, the hub's signing keys and the append-only guards.

The bottom layer of the hub: it imports no other domain (import-linter holds this in `make lint`)."""
