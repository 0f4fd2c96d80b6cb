"""The feed: collections, submitted signals, sealing them into signed batches, snapshots and the delta routes."""
