"""The hub-hosted reference matcher: an in-memory index caught up from sealed batches, and `POST /v1/match`."""
