"""The start-up version check passes on the stack's PostgreSQL 15 and names an older one."""

import re

import asyncpg
import pytest

from adapters.postgres.control_schema import check_server_version
from domain.errors import PermanentError
from domain.postgres_version import require_supported

pytestmark = pytest.mark.stack


async def test_the_stack_server_passes_the_check(pg: asyncpg.Connection) -> None:
    num = await check_server_version(pg)

    assert 150000 <= num < 160000, num  # the stack runs PostgreSQL 15


async def test_the_rule_fed_an_older_version_names_it(pg: asyncpg.Connection) -> None:
    text = str(await pg.fetchval("SHOW server_version")).replace("15.", "14.", 1)
    with pytest.raises(PermanentError, match=re.escape(f"PostgreSQL {text} ")):
        require_supported(140000 + int(await pg.fetchval("SHOW server_version_num")) % 10000,
                          text)
