"""Shared by every suite. Unit tests need nothing from here; stack fixtures live in
``tests/integration/conftest.py`` so a unit run never touches a server."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test under integration/ without the marker would slip into a "-m 'not stack'" run.
    unmarked = [
        item.nodeid
        for item in items
        if "integration" in item.path.parts and not item.get_closest_marker("stack")
    ]
    if unmarked:
        raise pytest.UsageError("integration tests must be marked stack: " + ", ".join(unmarked))
