"""Which PostgreSQL servers the service supports: 15 and later.

The service is built and tested against PostgreSQL 15 (the stack and CI run it); an older
server is refused at start-up, by name, rather than failing later in a migration, a backup or
a restore with an error that names nothing.
"""

from domain.errors import PermanentError

MIN_SERVER_VERSION_NUM = 150000


def require_supported(version_num: int, version: str) -> None:
    """Raise ``PermanentError("unsupported_postgres")`` naming ``version`` if it is below 15."""
    if version_num < MIN_SERVER_VERSION_NUM:
        raise PermanentError(
            "unsupported_postgres",
            f"PostgreSQL {version} (server_version_num {version_num}) is not supported;"
            " the Tenant Service needs PostgreSQL 15 or later",
        )
