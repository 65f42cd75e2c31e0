"""refuse_large_objects with a fake connection: revoke where we may, refuse where we can't."""

from typing import Any

import pytest

from adapters.postgres.large_objects import refuse_large_objects
from domain.errors import PermanentError


class FakeConnection:
    """Answers has_function_privilege from ``public_may`` and ownership from ``owner``."""

    def __init__(self, *, public_may: bool, owner: bool) -> None:
        self.public_may, self.owner = public_may, owner
        self.executed: list[str] = []
        self.asked: list[str] = []

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.asked.append(sql)
        if "has_function_privilege" in sql:
            return self.public_may
        assert "pg_has_role" in sql
        return self.owner

    async def execute(self, sql: str) -> None:
        self.executed.append(sql)
        if sql.startswith("REVOKE EXECUTE") and "lo_from_bytea" in sql and "FROM PUBLIC" in sql:
            self.public_may = False


async def test_a_superuser_service_revokes_and_provisions() -> None:
    conn = FakeConnection(public_may=True, owner=True)
    await refuse_large_objects(conn, "tenant_acme")  # type: ignore[arg-type]
    assert len(conn.executed) == 1 and not conn.public_may


async def test_without_the_revoke_a_tenant_is_refused_naming_the_fix() -> None:
    conn = FakeConnection(public_may=True, owner=False)
    with pytest.raises(PermanentError) as failure:
        await refuse_large_objects(conn, "tenant_acme")  # type: ignore[arg-type]
    assert failure.value.reason == "large_objects_allowed"
    assert "REVOKE EXECUTE ON FUNCTION" in failure.value.detail and conn.executed == []


async def test_once_revoked_nothing_is_done() -> None:
    conn = FakeConnection(public_may=False, owner=True)
    await refuse_large_objects(conn, "tenant_acme")  # type: ignore[arg-type]
    assert conn.executed == []


async def test_once_revoked_one_question_is_asked() -> None:
    """Every claim of a pooled schema and every creation asks: one round trip when the answer
    is no (the usual case), the check is repeated only after a revoke."""
    conn = FakeConnection(public_may=False, owner=True)
    await refuse_large_objects(conn, "tenant_acme")  # type: ignore[arg-type]
    assert len(conn.asked) == 1


async def test_after_a_revoke_the_check_is_asked_again() -> None:
    conn = FakeConnection(public_may=True, owner=True)
    await refuse_large_objects(conn, "tenant_acme")  # type: ignore[arg-type]
    assert sum("has_function_privilege" in q for q in conn.asked) == 2
