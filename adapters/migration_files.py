"""Loads versioned migration files from a folder into domain Migrations."""

import re
from pathlib import Path

from domain.migrations import Migration, parse_migration_filename

_REQUIRES = re.compile(r"^--\s*requires-extensions:\s*(?P<names>[a-z0-9_, ]+)$", re.MULTILINE)


def load_migrations(folder: Path) -> list[Migration]:
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        version, name = parse_migration_filename(path.name)
        migrations.append(Migration(version, name, path.read_text(encoding="utf-8")))
    return migrations


def required_extensions(migrations: list[Migration]) -> list[str]:
    """Extensions named in ``-- requires-extensions:`` headers, in first-seen order."""
    seen: dict[str, None] = {}
    for migration in migrations:
        for match in _REQUIRES.finditer(migration.sql):
            for name in match["names"].split(","):
                if name.strip():
                    seen[name.strip()] = None
    return list(seen)
