"""The client's tests run against the real app, served on loopback: the server tests' fixtures."""

from tests.server.conftest import app, app_engine, client, gql, settings

__all__ = ["app", "app_engine", "client", "gql", "settings"]
