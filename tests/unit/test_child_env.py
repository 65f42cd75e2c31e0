"""What a child process (pg_dump, zstd, age, psql, pg_restore) is given: a minimal environment
and libpq settings from the DSN as PG* variables, never the service's secrets and never argv."""

import pytest

from adapters.dump_pipeline import dsn_password, libpq_env
from adapters.processes import child_env
from domain.errors import PermanentError

PARENT = {
    "PATH": "/usr/local/bin:/usr/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "HOME": "/home/svc",
    "TENANT_PG_DSN": "postgresql://svc:dsn-secret@db/tenants",
    "TENANT_S3_SECRET_ACCESS_KEY": "s3-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "TENANT_REDIS_URL": "redis://:redis-secret@redis/0",
    "PGPASSWORD": "inherited-secret",
    "PGHOST": "somewhere-else",
}


def test_a_child_gets_only_the_harmless_parts_of_the_parent_environment() -> None:
    env = child_env(base=PARENT)

    assert env == {"PATH": PARENT["PATH"], "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
                   "HOME": "/home/svc"}


def test_a_child_gets_the_connection_it_is_given_and_not_an_inherited_one() -> None:
    env = child_env({"PGPASSWORD": "given", "PGHOST": "db"}, base=PARENT)

    assert (env["PGPASSWORD"], env["PGHOST"]) == ("given", "db")
    assert not any("secret" in value for value in env.values()), env


def test_a_dsn_becomes_libpq_variables_with_its_password_decoded() -> None:
    env = libpq_env("postgresql://svc:p%40ss%2Fw@db.internal:6432/tenants"
                    "?sslmode=verify-full&application_name=x&connect_timeout=5")

    assert env == {"PGHOST": "db.internal", "PGPORT": "6432", "PGUSER": "svc",
                   "PGPASSWORD": "p@ss/w", "PGDATABASE": "tenants", "PGSSLMODE": "verify-full",
                   "PGAPPNAME": "x", "PGCONNECT_TIMEOUT": "5"}


def test_a_password_in_the_query_string_goes_to_the_environment_too() -> None:
    env = libpq_env("postgresql:///tenants?host=/run/postgresql&user=svc&password=q-secret")

    assert (env["PGHOST"], env["PGUSER"], env["PGPASSWORD"]) == ("/run/postgresql", "svc",
                                                                "q-secret")


def test_a_dsn_parameter_with_no_libpq_variable_is_refused_by_name() -> None:
    with pytest.raises(PermanentError, match="frobnicate"):
        libpq_env("postgresql://svc@db/tenants?frobnicate=1")


def test_the_password_of_a_dsn_is_decoded_and_none_is_empty() -> None:
    assert dsn_password("postgresql://svc:p%40ss%3Aw@db.internal:5432/tenants") == "p@ss:w"
    assert dsn_password("postgresql://svc@db.internal/tenants") == ""
