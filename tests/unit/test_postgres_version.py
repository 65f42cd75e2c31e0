"""Start-up refuses a PostgreSQL older than 15, naming the version it found."""

import pytest

from domain.errors import PermanentError
from domain.postgres_version import MIN_SERVER_VERSION_NUM, require_supported


def test_fifteen_and_later_are_supported() -> None:
    for num, text in ((150000, "15.0"), (150014, "15.14"), (170002, "17.2 (Debian 17.2-1)")):
        require_supported(num, text)
    assert MIN_SERVER_VERSION_NUM == 150000


@pytest.mark.parametrize(("num", "text"), [(140011, "14.11"), (90624, "9.6.24"),
                                           (149999, "14.99")])
def test_older_servers_are_refused_by_name(num: int, text: str) -> None:
    with pytest.raises(PermanentError) as raised:
        require_supported(num, text)
    assert raised.value.reason == "unsupported_postgres"
    assert text in str(raised.value) and "15" in str(raised.value)
