"""The StopNCII-compatible facade: existing StopNCII clients fetch and report through per-partner API keys."""
