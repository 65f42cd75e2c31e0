"""schemathesis against the live API: generated requests on every route of the committed
OpenAPI document, with a valid token, answer no 5xx and conform to the document (status codes,
content types, headers and bodies)."""

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from runtime.settings import Settings
from tests.support.api import ApiProcess, DevKeys
from tests.support.stack import TenantIds

pytestmark = pytest.mark.stack

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
# Bounded so the run takes about a minute on the shared stack; the seed makes a failure
# reproducible from the log.
MAX_EXAMPLES = 15
SEED = 20261201
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
async def fuzzed_api(
    api_keys: DevKeys, log_dir: Path, session_worker: object
) -> AsyncIterator[ApiProcess]:
    # Limits high enough that generated requests test the routes, not the rate limiter (429 is
    # documented, so it would conform, but it would hide the routes behind it).
    process = ApiProcess(
        log_dir / "api-fuzz.log",
        api_keys,
        env={
            "TENANT_API_RATE_LIMIT_READ": "1000000/60",
            "TENANT_API_RATE_LIMIT_WRITE": "1000000/60",
        },
    )
    await process.start()
    yield process
    await process.stop()


async def test_generated_requests_get_no_5xx_and_conforming_answers(
    fuzzed_api: ApiProcess,
    api_keys: DevKeys,
    log_dir: Path,
    pg: asyncpg.Connection,
    settings: Settings,
    tenants: TenantIds,
) -> None:
    report = log_dir / "schemathesis"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        str(OPENAPI),
        "--url",
        fuzzed_api.url,
        "--header",
        f"Authorization: Bearer {api_keys.token('schemathesis')}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--continue-on-failure",
        "--report",
        "junit",
        "--report-dir",
        str(report),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    text = output.decode(errors="replace")
    # Tenants it provisioned (generated ids) are dropped with the session's own.
    for row in await pg.fetch(
        f"SELECT DISTINCT tenant_id FROM {settings.names.control_schema}.api_operations"
        " WHERE actor = 'schemathesis' AND kind = 'TenantRequested'"
    ):
        tenants.track(row["tenant_id"])
    (log_dir / "schemathesis.log").write_text(text)
    assert process.returncode == 0, f"schemathesis found problems:\n{text[-6000:]}"
    # It did exercise the API (a run that tested nothing also exits 0).
    counts = re.search(r"(\d+) generated, (\d+) passed", text)
    assert counts is not None and int(counts[2]) > 0, text[-2000:]
