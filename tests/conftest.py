"""Shared by every suite. The stack fixtures (tests/support/stack.py) are registered here, once;
they are lazy, so a unit run never touches a server."""

import pytest

from tests.support.api_fixtures import api, api_keys  # noqa: F401  (fixtures of the API suites)
from tests.support.stack import (  # noqa: F401  (fixtures, registered once for every suite)
    log_dir,
    pg,
    publisher,
    results,
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
