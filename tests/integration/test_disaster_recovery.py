"""The README's restore-by-hand recipes, run as written on the real stack.

The code blocks are read from README.md itself (each follows an HTML comment
``<!-- recipe: NAME -->``), so the documentation cannot drift from what works: both paths,
``tenantctl backup fetch`` + ``restore.sh`` and stock tools only, restore a backup taken through
the real worker into a scratch database the recipe creates, with the source tenant's row counts.
"""

import asyncio
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack

README = REPO_ROOT / "README.md"
STOCK = "restore-with-stock-tools"
FETCH = "restore-with-tenantctl"


def recipe(name: str, readme: str | None = None) -> str:
    """The ```bash block right after ``<!-- recipe: NAME -->`` in the README."""
    text = README.read_text(encoding="utf-8") if readme is None else readme
    found = re.search(
        rf"<!-- recipe: {re.escape(name)} -->\s*```bash\n(?P<code>.*?)```", text, re.DOTALL
    )
    assert found, f"README.md has no ```bash block after <!-- recipe: {name} -->"
    return found["code"]


def recipe_env(**values: str) -> dict[str, str]:
    """A shell without the service's settings: the recipe must load them itself (from .env).
    Only the deployment's namespace is kept: the suite's, which the stack's .env does not name
    (a namespaced deployment's .env would)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_")}
    return {**env, "TENANT_NAMESPACE": ns.names().namespace, **values}


async def run_recipe(code: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", code, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def row_counts(dsn: str, schema: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1", schema)
        return {
            t["relname"]: int(await conn.fetchval(
                f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(t['relname'])}"))
            for t in tables
        }
    finally:
        await conn.close()


class Scratch:
    """Names of scratch databases the recipes create; every one is dropped at the end."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.pg_dsn.get_secret_value()
        self.names: list[str] = []

    def new(self) -> str:
        self.names.append(f"dr_{secrets.token_hex(5)}")
        return self.names[-1]

    def dsn(self, name: str) -> str:
        return self._dsn.rsplit("/", 1)[0] + "/" + name

    async def drop_all(self, pg: asyncpg.Connection) -> None:
        for name in self.names:
            await pg.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


@pytest.fixture(scope="module")
async def backed_up(settings: Settings, log_dir: Path, pg: asyncpg.Connection,
                    tenants: TenantIds, publisher: KafkaEventPublisher, session_worker: object,
                    ) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A tenant with rows in every table, backed up by a real worker into the folder the
    stack's .env configures (where the recipe must find it); yields (tenant, row counts)."""
    mine = len(tenants.ids)
    tenant_id = tenants.new()
    async with bk.backup_workers(settings, log_dir) as pool:
        # No TENANT_BACKUP_LOCAL_DIR override: the worker writes where .env says.
        await pool.start("dr")
        await bk.wait_for_backup_group(settings, ours=1)
        async with ResultLog(settings) as results:
            await bk.provision(publisher, results, tenant_id)
            schema = quote_ident(ns.tenant(tenant_id))
            await bk.add_users(pg, tenant_id, ["alice", "bob", "carol"])
            owner = (await bk.as_tenant(pg, tenant_id, f"SELECT id FROM {schema}.users LIMIT 1"))[0][0]
            await bk.as_tenant(pg, tenant_id, f"INSERT INTO {schema}.projects (owner_id, name)"
                               " SELECT $1, 'p' || g FROM generate_series(1, 2) g", owner)
            await bk.as_tenant(pg, tenant_id, f"INSERT INTO {schema}.documents (project_id, title)"
                               f" SELECT p.id, 'd' FROM {schema}.projects p,"
                               " generate_series(1, 5)")
            done = await bk.backup(publisher, results, tenant_id)
        assert done.type == "BackupCompleted", done.data
        bk.assert_ours(done.data["uri"], settings.backup_local_dir.expanduser().as_uri())
        counts = await row_counts(settings.pg_dsn.get_secret_value(), ns.tenant(tenant_id))
        assert counts == {"documents": 10, "projects": 2, "users": 3}
        yield tenant_id, counts
    await bk.forget_backups(pg, tenants.ids[mine:])
    shutil.rmtree(settings.backup_local_dir.expanduser() / tenant_id, ignore_errors=True)


@pytest.fixture
async def scratch(settings: Settings, pg: asyncpg.Connection) -> AsyncIterator[Scratch]:
    dbs = Scratch(settings)
    yield dbs
    await dbs.drop_all(pg)


async def test_stock_tools_recipe_restores_the_tenant_into_a_new_database(
    backed_up: tuple[str, dict[str, int]], scratch: Scratch,
) -> None:
    tenant_id, expected = backed_up
    db = scratch.new()

    code, out = await run_recipe(recipe(STOCK), recipe_env(TENANT=tenant_id, SCRATCH_DB=db))

    assert code == 0, out
    assert await row_counts(scratch.dsn(db), ns.tenant(tenant_id)) == expected, out


async def test_tenantctl_fetch_recipe_restores_the_tenant_into_a_new_database(
    backed_up: tuple[str, dict[str, int]], scratch: Scratch, tmp_path: Path,
) -> None:
    tenant_id, expected = backed_up
    db = scratch.new()
    out_dir = tmp_path / "fetched"

    code, out = await run_recipe(
        recipe(FETCH), recipe_env(TENANT=tenant_id, SCRATCH_DB=db, OUT=str(out_dir)))

    assert code == 0, out
    assert await row_counts(scratch.dsn(db), ns.tenant(tenant_id)) == expected, out
    assert sorted(p.suffix for p in out_dir.iterdir()) == [".dump", ".json", ".sh"]


async def test_the_check_fails_when_the_recipe_skips_the_extensions_step(
    backed_up: tuple[str, dict[str, int]], scratch: Scratch,
) -> None:
    """The tests above would pass on a recipe that merely ran: this one breaks the recipe the
    way it was reported broken (no "extensions" schema) and watches the restore fail."""
    tenant_id, _ = backed_up
    db = scratch.new()
    broken = "\n".join(
        line for line in recipe(STOCK).splitlines() if "extensions" not in line.lower())
    assert broken != recipe(STOCK)

    code, out = await run_recipe(broken, recipe_env(TENANT=tenant_id, SCRATCH_DB=db))

    assert code != 0
    assert 'schema "extensions" does not exist' in out, out
    assert await row_counts(scratch.dsn(db), ns.tenant(tenant_id)) == {}


async def test_fetch_of_unknown_tenant_or_backup_exits_4_with_one_line(
    backed_up: tuple[str, dict[str, int]], tmp_path: Path,
) -> None:
    tenant_id, _ = backed_up
    cli = str(REPO_ROOT / ".venv" / "bin" / "tenantctl")
    for args, needle in (
        (["nosuch_tenant"], "unknown tenant 'nosuch_tenant'"),
        ([tenant_id, "--backup", "b-nosuch"], "no backup 'b-nosuch'"),
    ):
        code, out = await run_recipe(
            f'{cli} backup fetch {" ".join(args)} --out "$1"'.replace('"$1"', str(tmp_path)),
            dict(os.environ))
        assert code == 4, out
        assert out.strip().count("\n") == 0 and needle in out, out


async def test_restore_sh_works_for_a_user_who_is_not_the_service(
    backed_up: tuple[str, dict[str, int]], settings: Settings, pg: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    """Disaster recovery is often run by another database user than the service's: the dump's
    ``ALTER DEFAULT PRIVILEGES FOR ROLE <service user>`` would stop pg_restore for them."""
    tenant_id, expected = backed_up
    user, password, db = f"dr_user_{secrets.token_hex(3)}", secrets.token_hex(8), "dr_as_user"
    await pg.execute(f"CREATE ROLE {quote_ident(user)} LOGIN CREATEDB PASSWORD '{password}'")
    base = settings.pg_dsn.get_secret_value().rsplit("/", 1)[0]
    as_user = base.replace(base.split("//", 1)[1].split("@", 1)[0], f"{user}:{password}", 1)
    try:
        code, out = await run_recipe(
            f'.venv/bin/tenantctl backup fetch {tenant_id} --out "{tmp_path}"', dict(os.environ))
        assert code == 0, out
        conn = await asyncpg.connect(f"{as_user}/postgres")
        try:
            await conn.execute(f"CREATE DATABASE {quote_ident(db)}")
        finally:
            await conn.close()

        code, out = await run_recipe(f'"{tmp_path}/restore.sh" "{as_user}/{db}"',
                                     recipe_env())

        assert code == 0, out
        assert "default privileges of role" in out
        assert await row_counts(f"{as_user}/{db}", ns.tenant(tenant_id)) == expected
        conn = await asyncpg.connect(f"{as_user}/{db}")
        try:
            assert await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = 'users'",
                ns.tenant(tenant_id)) == user
        finally:
            await conn.close()
    finally:
        conn = await asyncpg.connect(f"{as_user}/postgres")
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(db)} WITH (FORCE)")
        finally:
            await conn.close()
        await pg.execute(f"DROP ROLE {quote_ident(user)}")
