"""The console's test world, for the Upstreams page test."""

from tests.console.conftest import world  # noqa: F401 - a fixture, made available to this folder
