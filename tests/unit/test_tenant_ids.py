"""Tenant id rules and the SQL names derived from them."""

import pytest

from domain.tenant_ids import (
    InvalidTenantId,
    quote_ident,
    quote_literal,
    role_name,
    schema_name,
    validate_tenant_id,
)

VALID = ["abc", "a" * 40, "acme", "t_0123abcd", "a__", "x9_9"]
INVALID = [
    "ab",  # 2 characters
    "a" * 41,  # 41 characters
    "",
    "Acme",
    "ACME",
    "1abc",
    "_abc",
    "ac-me",
    "acme.corp",
    "acme corp",
    "tënant",
    "ａｂｃ",  # full-width letters
    "abc\n",
    "abc\x00",
    'x"; DROP SCHEMA public;--',
    "x'; DROP SCHEMA public;--",
    "abc;drop",
]


@pytest.mark.parametrize("tenant_id", VALID)
def test_valid_ids_are_returned_unchanged(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize("tenant_id", INVALID)
def test_invalid_ids_are_refused(tenant_id: str) -> None:
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(tenant_id)


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(None)  # type: ignore[arg-type]


def test_invalid_tenant_id_carries_its_reason_code() -> None:
    assert InvalidTenantId.reason == "invalid_tenant_id"
    assert issubclass(InvalidTenantId, ValueError)


def test_schema_and_role_are_prefixed_id() -> None:
    assert schema_name("acme") == "tenant_acme"
    assert role_name("acme") == "tenant_acme"


def test_longest_id_fits_postgres_identifier_limit() -> None:
    name = schema_name("a" * 40)
    assert name == "tenant_" + "a" * 40
    assert len(name.encode()) <= 63


@pytest.mark.parametrize("tenant_id", ["ab", "Bad-Id", 'x"; DROP SCHEMA public;--'])
def test_names_are_never_derived_from_invalid_ids(tenant_id: str) -> None:
    with pytest.raises(InvalidTenantId):
        schema_name(tenant_id)
    with pytest.raises(InvalidTenantId):
        role_name(tenant_id)


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("tenant_acme", '"tenant_acme"'),
        ("Mixed Case", '"Mixed Case"'),
        ('a"b', '"a""b"'),
        ('x"; DROP SCHEMA public;--', '"x""; DROP SCHEMA public;--"'),
        ("", '""'),
    ],
)
def test_quote_ident_always_quotes_and_doubles_quotes(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("tenant_acme", "'tenant_acme'"),
        ("O'Brien", "'O''Brien'"),
        ("''", "''''''"),
        ("back\\slash", "'back\\slash'"),  # standard_conforming_strings: no escaping of \
    ],
)
def test_quote_literal_doubles_single_quotes(value: str, quoted: str) -> None:
    assert quote_literal(value) == quoted


def test_nul_is_refused_by_both_quoters() -> None:
    with pytest.raises(ValueError, match="NUL"):
        quote_ident("a\x00b")
    with pytest.raises(ValueError, match="NUL"):
        quote_literal("a\x00b")
