"""Fixtures for the API suites: one API process per test module, beside the session worker."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.settings import Settings
from tests.support.api import ApiProcess, DevKeys


@pytest.fixture(scope="module")
def api_keys(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> DevKeys:
    return DevKeys(tmp_path_factory.mktemp("api-keys"), settings.api_jwt_audience)


@pytest.fixture(scope="module")
async def api(
    api_keys: DevKeys, log_dir: Path, session_worker: object
) -> AsyncIterator[ApiProcess]:
    # After session_worker: commands need the provisioner and relay to be answered.
    process = ApiProcess(log_dir / "api.log", api_keys)
    await process.start()
    yield process
    await process.stop()
