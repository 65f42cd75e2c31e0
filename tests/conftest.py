"""Shared by every suite. The stack fixtures (tests/support/stack.py) are registered here, once;
they are lazy, so a unit run never touches a server."""

import os
import secrets

import pytest

# The suite runs in a deployment namespace of its own, fresh per session (set before anything
# reads the settings; worker subprocesses inherit it): no worker outside the session (the demo's,
# another suite's) can join its consumer groups, take its jobs or hold its locks.
os.environ["TENANT_NAMESPACE"] = SESSION_NAMESPACE = "it" + secrets.token_hex(4)

from tests.support.api_fixtures import api, api_keys  # noqa: E402, F401  (fixtures of the API suites)
from tests.support.ci_skips import CiSkips  # noqa: E402
from tests.support.stack import (  # noqa: E402, F401  (fixtures, registered once for every suite)
    log_dir,
    pg,
    publisher,
    results,
    service_pool,
    session_worker,
    settings,
    tenants,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test under integration/ without the marker would slip into a "-m 'not stack'" run.
    unmarked = [
        item.nodeid
        for item in items
        if "integration" in item.path.parts and not item.get_closest_marker("stack")
    ]
    if unmarked:
        raise pytest.UsageError("integration tests must be marked stack: " + ", ".join(unmarked))


def pytest_configure(config: pytest.Config) -> None:
    # Under CI a skipped test fails the run unless it declares a missing tool (needs_tool).
    config.pluginmanager.register(CiSkips(), "ci_skips")
