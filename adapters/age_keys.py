"""Per-tenant age keys (X25519), kept wrapped by a master key: the crypto-shredding key store.

The service encrypts backups with public recipients only. A tenant's identity is stored
age-encrypted to the master recipient; unwrapping needs the master identity file, which only
restore-capable workers are given. Deleting the row makes every backup of the tenant unreadable.

The master recipient is pinned in the database. Rotating it re-wraps every tenant key in one
transaction (the backups themselves are encrypted to the tenant keys and stay as they are); a
worker still configured with the old master then refuses to create new tenant keys.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path

import asyncpg

from adapters.processes import run
from domain.errors import PermanentError, TransientError
from domain.tenant_ids import quote_ident

RECIPIENT = re.compile(r"age1[0-9a-z]{58}")


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


async def recipient_of(identity_file: Path) -> str:
    """The public recipient of an identity file (``age-keygen -y``)."""
    return (await run(["age-keygen", "-y", str(identity_file)])).decode().strip()


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
        self._pin = f"{quote_ident(control_schema)}.backup_master"
        self._master = master_recipient

    async def pin_master(self, conn: asyncpg.Connection) -> str | None:
        """Pin our master recipient if none is; returns the pinned one when it differs."""
        await conn.execute(
            f"INSERT INTO {self._pin} (recipient) VALUES ($1) ON CONFLICT DO NOTHING", self._master
        )
        pinned = await conn.fetchval(f"SELECT recipient FROM {self._pin}")
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
        async with conn.transaction():
            # FOR SHARE waits for a rotation in progress; a key wrapped to a master rotated away
            # since this worker started would be unreadable to the new master's holders.
            pinned = await conn.fetchval(f"SELECT recipient FROM {self._pin} FOR SHARE")
            if pinned != self._master:
                raise TransientError(
                    "master_key_rotated: TENANT_BACKUP_MASTER_RECIPIENT is no longer the pinned"
                    f" master ({str(pinned)[:16]}...); restart this worker with the new one"
                )
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

    async def rotate_master(
        self,
        conn: asyncpg.Connection,
        current_identity_file: Path,
        new_recipient: str,
        progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> int:
        """Re-wrap every tenant key from the pinned master to ``new_recipient`` and pin it, all
        in one transaction (a failure changes nothing). Returns how many keys were re-wrapped.

        ``current_identity_file`` must be the pinned master's identity: it is checked first.
        """
        if not RECIPIENT.fullmatch(new_recipient):
            raise PermanentError(
                "invalid_recipient", f"not an age X25519 recipient: {new_recipient!r}"
            )
        holder = await recipient_of(current_identity_file)
        async with conn.transaction():
            pinned = await conn.fetchval(f"SELECT recipient FROM {self._pin} FOR UPDATE")
            if pinned is None:
                raise PermanentError("no_master", "no master is pinned yet: nothing to rotate")
            if holder != pinned:
                raise PermanentError(
                    "wrong_identity",
                    f"{current_identity_file} is not the pinned master's identity"
                    f" ({str(pinned)[:16]}...)",
                )
            rows = await conn.fetch(
                f"SELECT tenant_id, wrapped_identity FROM {self._table}"
                " ORDER BY tenant_id FOR UPDATE"
            )
            for done, row in enumerate(rows, 1):
                identity = await unwrap(bytes(row["wrapped_identity"]), current_identity_file)
                await conn.execute(
                    f"UPDATE {self._table} SET wrapped_identity = $2 WHERE tenant_id = $1",
                    row["tenant_id"],
                    await wrap(identity, new_recipient),
                )
                progress(done, len(rows))
            await conn.execute(
                f"UPDATE {self._pin} SET recipient = $1, pinned_at = now()", new_recipient
            )
        return len(rows)
