"""The staff console at /console/: server-rendered pages for governance staff and regulators."""
