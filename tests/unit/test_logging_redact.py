"""runtime.logging.redact: a DSN's password never reaches a log line."""

import pytest

from runtime.logging import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://tenant_service:s3cr3t@127.0.0.1:5432/tenants",
         "postgresql://tenant_service:***@127.0.0.1:5432/tenants"),
        ("connect failed: postgres://u:p4ss@db/x timeout",
         "connect failed: postgres://u:***@db/x timeout"),
        ("redis://:s3cr3t@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_password_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert "s3cr3t" not in redact(text) and "p4ss" not in redact(text)


@pytest.mark.parametrize(
    "text", ["postgresql://tenant_service@127.0.0.1/tenants", "no secrets here", "a:b@c"]
)
def test_text_without_password_is_unchanged(text: str) -> None:
    assert redact(text) == text
