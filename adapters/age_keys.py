"""Per-tenant age keys (X25519), kept wrapped by a master key: the crypto-shredding key store.

The service encrypts backups with public recipients only. A tenant's identity is stored
age-encrypted to the master recipient; unwrapping needs the master identity file, which only
restore-capable workers are given. Deleting the row makes every backup of the tenant unreadable.
"""

import os
from pathlib import Path

import asyncpg

from adapters.processes import run
from domain.tenant_ids import quote_ident


async def generate_identity() -> tuple[str, str]:
    """(identity, recipient) from age-keygen."""
    out = (await run(["age-keygen"])).decode()
    identity = next(line for line in out.splitlines() if line.startswith("AGE-SECRET-KEY-"))
    recipient = (await run(["age-keygen", "-y"], stdin=identity.encode())).decode().strip()
    return identity, recipient


async def wrap(identity: str, master_recipient: str) -> bytes:
    return await run(["age", "-r", master_recipient], stdin=identity.encode())


async def unwrap(wrapped: bytes, master_identity_file: Path) -> str:
    return (await run(["age", "-d", "-i", str(master_identity_file)], stdin=wrapped)).decode()


class IdentityPipe:
    """Hands an identity to an age child process as /dev/fd/N: it never touches a disk."""

    def __init__(self, identity: str) -> None:
        self._read, write = os.pipe()
        with os.fdopen(write, "wb") as w:  # an identity is ~100 bytes, far below the pipe buffer
            w.write(identity.encode() + b"\n")

    @property
    def fd(self) -> int:
        return self._read

    @property
    def path(self) -> str:
        return f"/dev/fd/{self._read}"

    def close(self) -> None:
        os.close(self._read)


class PostgresTenantKeys:
    def __init__(self, control_schema: str, master_recipient: str) -> None:
        self._table = f"{quote_ident(control_schema)}.tenant_keys"
        self._master = master_recipient

    async def pin_master(self, conn: asyncpg.Connection) -> str | None:
        """Pin our master recipient if none is; returns the pinned one when it differs."""
        table = self._table.replace(".tenant_keys", ".backup_master")
        await conn.execute(
            f"INSERT INTO {table} (recipient) VALUES ($1) ON CONFLICT DO NOTHING", self._master
        )
        pinned = await conn.fetchval(f"SELECT recipient FROM {table}")
        return None if pinned == self._master else str(pinned)

    async def recipient(self, conn: asyncpg.Connection, tenant_id: str) -> str:
        """The tenant's recipient, creating its key on first use (race-free via the PK)."""
        existing = await conn.fetchval(
            f"SELECT recipient FROM {self._table} WHERE tenant_id = $1", tenant_id
        )
        if existing:
            return str(existing)
        identity, recipient = await generate_identity()
        wrapped = await wrap(identity, self._master)
        await conn.execute(
            f"INSERT INTO {self._table} (tenant_id, recipient, wrapped_identity)"
            " VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING",
            tenant_id,
            recipient,
            wrapped,
        )
        return str(
            await conn.fetchval(
                f"SELECT recipient FROM {self._table} WHERE tenant_id = $1", tenant_id
            )
        )

    async def identity(
        self, conn: asyncpg.Connection, tenant_id: str, master_identity_file: Path
    ) -> str | None:
        wrapped = await conn.fetchval(
            f"SELECT wrapped_identity FROM {self._table} WHERE tenant_id = $1", tenant_id
        )
        return await unwrap(bytes(wrapped), master_identity_file) if wrapped else None

    async def destroy(self, conn: asyncpg.Connection, tenant_id: str) -> bool:
        status = await conn.execute(f"DELETE FROM {self._table} WHERE tenant_id = $1", tenant_id)
        return bool(status != "DELETE 0")
