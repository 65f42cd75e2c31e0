"""Restore: the backup's artifact through the service's path vs stock pg_restore.

ours: adapters.dump_pipeline.restore_sql (age -d | zstd -d | pg_restore -f -) streamed into
psql inside one transaction (adapters.psql.PsqlTransaction), exactly as Restorer runs it, into a
scratch database. baseline: ``pg_restore -d scratch`` of the already decrypted, decompressed dump
(that preparation is not timed). MB/s is the source schema's size over the wall time.
"""

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import asyncpg

from adapters.dump_pipeline import libpq_env, restore_sql
from adapters.postgres.control_schema import ensure_extensions
from adapters.psql import PsqlTransaction
from bench import backup, common
from bench.common import Row
from domain.tenant_ids import quote_ident


async def _scratch() -> tuple[str, str]:
    name = f"bench_restore_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(common.dsn())
    try:
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()
    dsn = common.dsn().rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(dsn)
    try:
        await ensure_extensions(conn)
    finally:
        await conn.close()
    return name, dsn


async def _drop(name: str) -> None:
    conn = await asyncpg.connect(common.dsn())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


async def _chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while data := await asyncio.to_thread(f.read, size):
            yield data


async def _ours(fx: backup.Fixture, dsn: str) -> float:
    psql = PsqlTransaction(dsn)
    clock = common.Clock()
    await psql.start("")
    try:
        await restore_sql(fx.artifact, fx.identity, psql.stream)
        await psql.finish(commit=True)
    except BaseException:
        await psql.kill()
        raise
    return clock.elapsed


def _decrypt(fx: backup.Fixture) -> Path:
    plain = fx.folder / "plain.dump"
    key = fx.folder / "identity.txt"
    key.write_text(fx.identity + "\n")
    subprocess.run(f"age -d -i {key} {fx.artifact} | zstd -q -d > {plain}",
                   shell=True, check=True)
    key.unlink()
    return plain


async def _stock(plain: Path, dsn: str) -> float:
    env = libpq_env(dsn)
    url = env["PGDATABASE"]  # the rest of the connection is in env, never argv
    clock = common.Clock()
    proc = await asyncio.create_subprocess_exec("pg_restore", "-d", url, str(plain),
                                                env={**__import__("os").environ, **env})
    if await proc.wait() != 0:
        raise RuntimeError("pg_restore failed")
    return clock.elapsed


async def measure(fx: backup.Fixture) -> list[Row]:
    if not fx.artifact.exists():  # restore alone: make the artifact once, untimed
        await backup.measure_once(fx)
    plain = _decrypt(fx)
    ours: list[float] = []
    stock: list[float] = []
    for rep in range(common.REPS):
        for runner, out in ((partial(_ours, fx), ours), (partial(_stock, plain), stock)):
            name, dsn = await _scratch()
            try:
                out.append(fx.megabytes / await runner(dsn))
            finally:
                await _drop(name)
        print(f"  rep {rep}: ours {ours[-1]:.1f} MB/s, pg_restore {stock[-1]:.1f} MB/s", flush=True)
    return [Row("restore", f"{fx.megabytes:.0f} MB schema", "MB/s", ours, stock,
                "stock pg_restore -d (decrypted)", goal="(none set; compare)",
                notes="ours: one psql transaction, as Restorer does")]


async def run(size: int) -> list[Row]:
    fx = await backup.fixture(size)
    try:
        return await measure(fx)
    finally:
        await backup.dispose(fx)


if __name__ == "__main__":
    common.save("restore", asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 300)))
