"""tenantctl backup fetch without a stack: the restore.sh it writes, and that a wrong sha256
stops the fetch before anything is decrypted."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.postgres.backup_jobs import CatalogRow
from tenantctl import backup_fetch


def test_restore_script_creates_what_the_dump_needs_then_restores_with_stock_tools() -> None:
    script = backup_fetch.restore_script("acme", "b-123", 2, ["citext"], "b-123.dump")

    assert 'CREATE SCHEMA IF NOT EXISTS "extensions";' in script
    assert 'CREATE EXTENSION IF NOT EXISTS "citext" SCHEMA "extensions";' in script
    assert "rolname = 'tenant_acme'" in script and 'CREATE ROLE "tenant_acme" NOLOGIN;' in script
    assert "pg_restore --exit-on-error --single-transaction --no-owner" in script
    assert '"$here/b-123.dump"' in script
    assert "@" not in script.replace("$@", "")  # every placeholder filled


def test_extensions_follow_the_backups_template_version() -> None:
    assert backup_fetch.extensions_at(0) == []
    assert backup_fetch.extensions_at(2) == ["citext"]


class FakeTarget:
    kind = "fake"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    async def read(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        yield self.objects[key]

    async def close(self) -> None:
        pass


def _row(sha256: str) -> CatalogRow:
    now = datetime.now(UTC)
    return CatalogRow("b-1", "acme", "fake", "fake://acme/b-1", "acme/b-1.dump.zst.age",
                      "acme/b-1.manifest.json", 3, sha256, 2, now, now, None, None)


def test_a_wrong_sha256_stops_the_fetch_before_decrypting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = FakeTarget({"acme/b-1.dump.zst.age": b"tampered", "acme/b-1.manifest.json": b"{}"})
    decrypted: list[Any] = []

    async def catalogued(*_: Any) -> tuple[CatalogRow, str]:
        return _row("0" * 64), "AGE-SECRET-KEY-1FAKE"

    async def fake_target(_: Any) -> FakeTarget:
        return target

    async def decrypt(*args: Any) -> None:
        decrypted.append(args)

    monkeypatch.setattr(backup_fetch, "_catalogued", catalogued)
    monkeypatch.setattr(backup_fetch, "backup_target", fake_target)
    monkeypatch.setattr(backup_fetch, "decrypt", decrypt)

    with pytest.raises(backup_fetch.FetchError) as failed:
        asyncio.run(backup_fetch.fetch(None, "acme", "latest", tmp_path))  # type: ignore[arg-type]

    assert failed.value.exit_code == backup_fetch.EXIT_FAILED
    assert "sha256 mismatch" in str(failed.value)
    assert decrypted == []
    assert not (tmp_path / "b-1.dump.zst.age").exists() and not (tmp_path / "restore.sh").exists()
