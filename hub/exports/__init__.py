"""Transparency exports: signed, suppressed bundles of a period, drawn from the audit log (docs/formats.md)."""
