"""Shared fixtures; their implementation lives in tests/support."""

import pytest

from tests.support.infra import nats_server, nats_url, pg_admin_dsn, pg_dsn, skip_without_docker
from tests.support.publish import js
from tests.support.stores import apps

__all__ = ["apps", "js", "nats_server", "nats_url", "pg_admin_dsn", "pg_dsn"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    skip_without_docker(item)
