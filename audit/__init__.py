"""Trust primitives for hashfed: Merkle logs, signed notes, DSSE envelopes and key sets.

Imports nothing of ours and no web or database framework, so a partner or a regulator can verify the hub
with this package alone. See docs/formats.md for the byte formats.
"""
