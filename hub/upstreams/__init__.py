"""Upstream collections: a local collection fed from another hashfed hub or a StopNCII-shaped API (issue 22)."""
