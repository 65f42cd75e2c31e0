"""``tenantctl backup fetch``: one catalogued backup, verified, decrypted, with a ``restore.sh``.

For disaster recovery and inspection outside the service: the artifact is read from the
configured target (local folder, S3 or SFTP, through the same adapters the workers use),
written to disk and checked against the catalogue's sha256 *before* anything decrypts it (a
tampered or truncated file never reaches age or pg_restore). Then it is decrypted with the
tenant's identity, unwrapped by the master identity, into a pg_restore custom-format dump, and a
``restore.sh`` is written beside it that restores with stock tools only (psql, pg_restore).
"""

import asyncio
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from adapters.age_keys import IdentityPipe, PostgresTenantKeys
from adapters.backup_targets.base import BackupTarget
from adapters.migration_files import load_migrations, required_extensions
from adapters.postgres.backup_jobs import CatalogRow, PostgresBackupJobs
from adapters.postgres.control_schema import EXTENSIONS_SCHEMA
from adapters.processes import StderrTail, kill_and_reap
from domain.errors import PermanentError, TransientError
from domain.lifecycle import TenantStatus
from domain.tenant_ids import NAME_PREFIX, quote_ident, quote_literal, role_name, schema_name
from migrations import TENANT_DIR
from runtime.backup_target import backup_target
from runtime.settings import Settings

EXIT_FAILED = 1
EXIT_NOT_FOUND = 4
TEMPLATE = Path(__file__).with_name("templates") / "restore.sh"
_CHUNK = 1 << 20


class FetchError(Exception):
    """Why a fetch stopped, as one line, with the exit code tenantctl ends with."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Fetched:
    backup_id: str
    sha256: str
    dump: Path
    manifest: Path
    script: Path


def restore_script(
    tenant_id: str,
    backup_id: str,
    schema_version: int,
    extensions: list[str],
    dump_file: str,
    tenant_prefix: str = NAME_PREFIX,
) -> str:
    """The ``restore.sh`` for one decrypted dump (identifiers quoted, never formatted raw).
    ``tenant_prefix``: the deployment's (runtime.names), as the dump's schema is named."""
    ext_q = quote_ident(EXTENSIONS_SCHEMA)
    create = "\n".join(
        f"CREATE EXTENSION IF NOT EXISTS {quote_ident(e)} SCHEMA {ext_q};" for e in extensions
    )
    role = role_name(tenant_id, tenant_prefix)
    values = {
        "@TENANT_ID@": tenant_id,
        "@BACKUP_ID@": backup_id,
        "@SCHEMA@": schema_name(tenant_id, tenant_prefix),
        "@SCHEMA_VERSION@": str(int(schema_version)),
        "@EXTENSIONS_SCHEMA_Q@": ext_q,
        "@EXTENSIONS_SCHEMA@": EXTENSIONS_SCHEMA,
        "@EXTENSIONS@": ", ".join(extensions) or "none",
        "@CREATE_EXTENSIONS@": create,
        "@ROLE_Q@": quote_ident(role),
        "@ROLE_L@": quote_literal(role),
        "@ROLE@": role,
        "@DUMP_FILE@": dump_file,
    }
    text = TEMPLATE.read_text(encoding="utf-8")
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def extensions_at(schema_version: int) -> list[str]:
    """Extensions the tenant template needs up to ``schema_version`` (the backup's)."""
    migrations = [m for m in load_migrations(TENANT_DIR) if m.version <= schema_version]
    return required_extensions(migrations)


async def _catalogued(settings: Settings, tenant_id: str, backup_id: str) -> tuple[CatalogRow, str]:
    """The catalogue row and the tenant's unwrapped identity; FetchError(4) when unknown."""
    if settings.backup_master_identity_file is None:
        raise FetchError(
            EXIT_FAILED,
            "decrypting needs the master identity: set TENANT_BACKUP_MASTER_IDENTITY_FILE",
        )
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        store = settings.names.tenant_store()
        record = await store.get(conn, tenant_id)
        if record is None or record.status == TenantStatus.ERASED:
            raise FetchError(EXIT_NOT_FOUND, f"unknown tenant {tenant_id!r}")
        row = await PostgresBackupJobs(settings.names.control_schema).backup(conn, tenant_id, backup_id)
        if row is None:
            raise FetchError(EXIT_NOT_FOUND, f"no backup {backup_id!r} of tenant {tenant_id!r}")
        keys = PostgresTenantKeys(settings.names.control_schema, settings.backup_master_recipient or "")
        identity = await keys.identity(conn, tenant_id, settings.backup_master_identity_file)
    finally:
        await conn.close()
    if identity is None:
        raise FetchError(EXIT_FAILED, f"the backup key of {tenant_id!r} was destroyed (erased)")
    return row, identity


async def download(target: BackupTarget, key: str, path: Path) -> str:
    """Stream ``key`` to ``path`` (mode 0600); returns the sha256 of the bytes written."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        async for chunk in target.read(key, _CHUNK):
            digest.update(chunk)
            await asyncio.to_thread(file.write, chunk)
    return digest.hexdigest()


async def decrypt(artifact: Path, identity: str, dump: Path) -> None:
    """``age -d -i <identity> < artifact | zstd -d > dump``; the identity never touches a disk."""
    key = IdentityPipe(identity)
    read, write = os.pipe()
    try:
        with (
            artifact.open("rb") as src,
            os.fdopen(os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out,
        ):
            age = await asyncio.create_subprocess_exec(
                "age",
                "-d",
                "-i",
                key.path,
                stdin=src,
                stdout=write,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(key.fd,),
            )
            try:
                zstd = await asyncio.create_subprocess_exec(
                    "zstd",
                    "-q",
                    "-d",
                    "-c",
                    stdin=read,
                    stdout=out,
                    stderr=asyncio.subprocess.PIPE,
                )
            except BaseException:
                await kill_and_reap([age], drain_stderr=True)
                raise
    finally:
        os.close(read)
        os.close(write)
        key.close()
    procs = [("age", age, StderrTail(age.stderr)), ("zstd", zstd, StderrTail(zstd.stderr))]
    failures = [
        f"{name} exited {code}: {(await tail.text())[-300:]}"
        for name, proc, tail in procs
        if (code := await proc.wait()) != 0
    ]
    if failures:
        raise FetchError(EXIT_FAILED, "decrypting failed: " + "; ".join(failures))


async def fetch(settings: Settings, tenant_id: str, backup_id: str, out_dir: Path) -> Fetched:
    """Fetch, verify, decrypt one backup of ``tenant_id`` into ``out_dir``, with restore.sh."""
    row, identity = await _catalogued(settings, tenant_id, backup_id)
    await asyncio.to_thread(out_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    artifact = out_dir / f"{row.backup_id}.dump.zst.age"
    manifest = out_dir / f"{row.backup_id}.manifest.json"
    target = await backup_target(settings)
    try:
        sha = await download(target, row.artifact_key, artifact)
        await download(target, row.manifest_key, manifest)
    except PermanentError as e:
        raise FetchError(EXIT_FAILED, f"reading {row.uri} failed: {e}") from None
    except TransientError as e:
        raise FetchError(EXIT_FAILED, f"target unreachable: {e}") from None
    finally:
        await target.close()
    if sha != row.sha256:
        # Checked before decrypting: a tampered artifact never reaches age or pg_restore.
        await asyncio.to_thread(artifact.unlink)
        raise FetchError(
            EXIT_FAILED, f"sha256 mismatch for {row.uri}: catalogue {row.sha256}, read {sha}"
        )
    dump = out_dir / f"{row.backup_id}.dump"
    try:
        await decrypt(artifact, identity, dump)
    finally:
        await asyncio.to_thread(artifact.unlink)
    script = out_dir / "restore.sh"
    text = restore_script(
        tenant_id,
        row.backup_id,
        row.schema_version,
        extensions_at(row.schema_version),
        dump.name,
        settings.names.tenant_prefix,
    )
    await asyncio.to_thread(_write_executable, script, text)
    return Fetched(row.backup_id, sha, dump, manifest, script)


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o700)


def main(settings: Settings, tenant_id: str, backup_id: str, out_dir: Path) -> int:
    """Run a fetch for the CLI: a summary on stdout, or one line on stderr; the exit code."""
    try:
        fetched = asyncio.run(fetch(settings, tenant_id, backup_id, out_dir))
    except FetchError as e:
        print(f"backup fetch: {e}", file=sys.stderr)
        return e.exit_code
    except (PermanentError, TransientError, OSError, asyncpg.PostgresError) as e:
        print(f"backup fetch: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"backup {fetched.backup_id} sha256 {fetched.sha256} verified")
    print(f"dump:     {fetched.dump}")
    print(f"manifest: {fetched.manifest}")
    print(f"restore:  createdb NAME && {fetched.script} DSN-OF-NAME")
    return 0
