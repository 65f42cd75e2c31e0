"""Driver errors become ours: a connection whose protocol state broke under a server restart
(asyncpg's InternalClientError, "another operation is in progress") is transient, as a closed
connection is: the caller retries on another connection. So is a catalog row two transactions
updated at once; any other internal error stays permanent."""

import asyncpg
import pytest

from adapters.postgres.errors import translated
from domain.errors import PermanentError, TransientError


def test_a_connection_broken_mid_protocol_is_transient() -> None:
    with pytest.raises(TransientError, match="another operation"), translated("claim"):
        raise asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress")


def test_a_refused_login_stays_permanent() -> None:
    with pytest.raises(PermanentError), translated("connect"):
        raise asyncpg.InvalidPasswordError("password authentication failed")


def test_a_catalog_row_updated_concurrently_is_transient() -> None:
    with pytest.raises(TransientError, match="tuple concurrently updated"), translated("grant"):
        raise asyncpg.InternalServerError("tuple concurrently updated")


def test_another_internal_error_stays_permanent() -> None:
    with pytest.raises(PermanentError), translated("read"):
        raise asyncpg.InternalServerError("cache lookup failed for relation 16384")
