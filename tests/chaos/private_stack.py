"""A PRIVATE stack for fault injection: its own Kafka, PostgreSQL and Redis (``scripts/stack`` with
another state dir, env file and ports), so SIGKILLs and restarts never touch the shared stack
other engineers' tests run against.

The backup target of the chaos suites is the local folder ``$STATE/backups``. "Target down" moves
that folder aside and puts a plain file in its place: every write then fails with
``NotADirectoryError`` (a transient error for ``LocalFolderTarget``), existing artifacts are kept,
and "target up" moves them back. (``chmod 000`` would not do: the workers run as root.)

Ports: ``TENANT_CHAOS_PORT_BASE`` (default 19000) + fixed offsets, each checked to be free first.
``TENANT_CHAOS_KEEP_STACK=1`` keeps the stack (and its state dir) after the session, for a look.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from dotenv import dotenv_values

from runtime.settings import Settings
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, WorkerProcess

STACK = REPO_ROOT / "scripts" / "stack"
SHARED_ENV = REPO_ROOT / ".env"
SERVICES = ("kafka", "postgres", "redis")
#: short timeouts and backoffs so faults are noticed and recovered from in seconds
FAST_ENV = {
    "TENANT_RETRY_BASE_DELAY_S": "0.1",
    "TENANT_RETRY_MAX_DELAY_S": "2",
    "TENANT_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "TENANT_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "TENANT_KAFKA_REQUEST_TIMEOUT_MS": "10000",
    "TENANT_PG_STATEMENT_TIMEOUT_MS": "20000",
    "TENANT_OUTBOX_POLL_INTERVAL_S": "0.3",
    "TENANT_SHUTDOWN_GRACE_S": "10",
    "TENANT_BACKUP_TARGET": "local",
    "TENANT_BACKUP_POLL_INTERVAL_S": "0.2",
    "TENANT_BACKUP_RETRY_BASE_S": "0.2",
    "TENANT_BACKUP_RETRY_MAX_S": "1.5",
    "TENANT_BACKUP_MAX_ATTEMPTS": "50",
    "TENANT_BACKUP_LEASE_S": "6",
    "TENANT_BACKUP_ZSTD_THREADS": "1",
    "TENANT_SCHEDULER_POLL_S": "0.5",
    "TENANT_METRICS_INTERVAL": "15",
    "TENANT_PG_POOL_MAX": "4",
    "TENANT_LOG_LEVEL": "INFO",
    # distinctive, so test_secrets.py can look for it (the target is local: S3 is never called)
    "TENANT_S3_SECRET_ACCESS_KEY": f"chaos-s3-secret-{secrets.token_hex(12)}",
}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports() -> dict[str, int]:
    base = int(os.environ.get("TENANT_CHAOS_PORT_BASE", "19000"))
    for shift in range(0, 500, 50):
        ports = {"kafka": base + shift + 92, "controller": base + shift + 93,
                 "postgres": base + shift + 32, "redis": base + shift + 79}
        if all(_port_free(p) for p in ports.values()):
            return ports
    raise RuntimeError(f"no free port set near {base}")


@dataclass
class PrivateStack:
    state: Path
    env_file: Path
    ports: dict[str, int]
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    # ---- scripts/stack -------------------------------------------------------------------------

    def _stack_env(self, services: Sequence[str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_")}
        env.update({
            "TENANT_STACK_STATE": str(self.state),
            "TENANT_STACK_ENV_FILE": str(self.env_file),
            "TENANT_STACK_SERVICES": " ".join(services),
            "TENANT_STACK_KAFKA_PORT": str(self.ports["kafka"]),
            "TENANT_STACK_KAFKA_CONTROLLER_PORT": str(self.ports["controller"]),
            "TENANT_STACK_PG_PORT": str(self.ports["postgres"]),
            "TENANT_STACK_REDIS_PORT": str(self.ports["redis"]),
        })
        return env

    async def stack(self, command: str, *args: str, services: Sequence[str] = SERVICES) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(STACK), command, *args, env=self._stack_env(services),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise AssertionError(f"scripts/stack {command} {args} failed:\n{text[-3000:]}")
        return text

    # ---- what the workers and the tests connect to ---------------------------------------------

    @property
    def values(self) -> dict[str, str]:
        return {k: v for k, v in dotenv_values(self.env_file).items() if v is not None}

    @property
    def dsn(self) -> str:
        return self.values["TENANT_PG_DSN"]

    @property
    def pg_password(self) -> str:
        return (self.state / "pg-password").read_text().strip()

    @property
    def backup_dir(self) -> Path:
        return Path(self.values["TENANT_BACKUP_LOCAL_DIR"])

    @property
    def master_key(self) -> Path:
        return Path(self.values["TENANT_BACKUP_MASTER_IDENTITY_FILE"])

    def settings(self, **overrides: object) -> Settings:
        v = self.values
        return Settings(  # type: ignore[call-arg]
            pg_dsn=v["TENANT_PG_DSN"], kafka_bootstrap=v["TENANT_KAFKA_BOOTSTRAP"],
            redis_url=v["TENANT_REDIS_URL"], **overrides)

    def worker_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Private values override the shared ``.env`` in the workers' cwd. Keys only the shared
        one has (SFTP, S3) still point at the shared sshd/moto: harmless, the target is local."""
        return {**self.values, **FAST_ENV, **(extra or {})}

    async def worker(self, roles: Sequence[str], name: str,
                     env: Mapping[str, str] | None = None, *, start: bool = True) -> WorkerProcess:
        proc = WorkerProcess(roles, self.log_dir / f"{name}-{secrets.token_hex(2)}.log",
                             self.worker_env(env))
        self.workers.append(proc)
        if start:
            await proc.start()
        return proc

    async def stop_workers(self) -> None:
        for w in self.workers:
            if w.running:
                try:
                    await w.terminate(30)
                except AssertionError:
                    pass
        self.workers.clear()

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)

    # ---- faults ----------------------------------------------------------------------------------

    def _kafka_pid(self) -> int | None:
        path = self.state / "started" / "kafka"
        return int(path.read_text()) if path.exists() else None

    async def kafka_down(self) -> None:
        """SIGTERM the private broker (a clean shutdown) and wait for it to exit."""
        pid = self._kafka_pid()
        assert pid, "private kafka pid unknown"
        os.kill(pid, signal.SIGTERM)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        try:
            await wait_until(gone, 40, what="private kafka to exit", interval=0.2)
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            await wait_until(gone, 10, what="private kafka to die", interval=0.2)
        (self.state / "started" / "kafka").unlink(missing_ok=True)

    async def kafka_up(self) -> None:
        await self.stack("up", services=("kafka",))

    async def postgres_down(self) -> None:
        await self.stack("down", services=("postgres",))

    async def postgres_up(self) -> None:
        await self.stack("up", services=("postgres",))

    async def postgres_restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is cut, the server is back in seconds."""
        data = (self.state / "started" / "postgres").read_text().strip()
        log = (self.state / "logs" / "postgres.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            "su", "postgres", "-s", "/bin/sh", "-c",
            f"/usr/lib/postgresql/15/bin/pg_ctl -D '{data}' -w -t 60 restart -m fast"
            f" -o \"-c listen_addresses=127.0.0.1 -c port={self.ports['postgres']}"
            f" -c unix_socket_directories={Path(data).parent}/pg-socket -c max_connections=300\"",
            # the new postmaster inherits stdout: a pipe would never reach EOF
            stdout=log, stderr=subprocess.STDOUT)
        code = await proc.wait()
        log.close()
        assert code == 0, (self.state / "logs" / "postgres.log").read_text()[-2000:]

    async def postgres_stop_smart(self) -> None:
        """``pg_ctl stop -m smart``, not waited for: while a session stays open the server is
        shutting down and refuses new connections (SQLSTATE 57P03); it stops once they close."""
        data = (self.state / "started" / "postgres").read_text().strip()
        proc = await asyncio.create_subprocess_exec(
            "su", "postgres", "-s", "/bin/sh", "-c",
            f"/usr/lib/postgresql/15/bin/pg_ctl -D '{data}' -W stop -m smart",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert await proc.wait() == 0, "pg_ctl stop -m smart failed"

    async def redis_down(self) -> None:
        await self.stack("down", services=("redis",))

    async def redis_up(self) -> None:
        await self.stack("up", services=("redis",))

    @property
    def _offline_dir(self) -> Path:
        return self.backup_dir.with_name(self.backup_dir.name + ".offline")

    def target_down(self) -> None:
        """The backup folder becomes a plain file: writes fail (transiently) until target_up().

        The workers never make the folder again after their start (a missing folder is a target
        that is down); should one appear between our two renames all the same, whatever is in it
        is merged into the offline copy, then we try again.
        """
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        os.rename(self.backup_dir, self._offline_dir)
        blocker = self.backup_dir.with_name(self.backup_dir.name + ".blocker")
        for _ in range(50):
            blocker.write_text("backup target unavailable (chaos)\n")
            try:
                os.rename(blocker, self.backup_dir)
                return
            except OSError:  # a worker made the folder again in between
                self._merge_into_offline()
        raise AssertionError("could not take the backup target down")

    def target_up(self) -> None:
        if not self._offline_dir.exists():
            return
        for _ in range(50):  # workers may still be writing into a folder they recreated
            if self.backup_dir.is_dir():
                self._merge_into_offline()
            else:
                self.backup_dir.unlink(missing_ok=True)
            try:
                os.rename(self._offline_dir, self.backup_dir)
                return
            except OSError:
                continue
        raise AssertionError("could not bring the backup target back")

    def _merge_into_offline(self) -> None:
        if self.backup_dir.is_dir():
            shutil.copytree(self.backup_dir, self._offline_dir, dirs_exist_ok=True)
            shutil.rmtree(self.backup_dir, ignore_errors=True)


async def start_private_stack(root: Path, log_dir: Path) -> PrivateStack:
    stack = PrivateStack(state=root / "state", env_file=root / "env", ports=_pick_ports(),
                         log_dir=log_dir)
    await stack.stack("up")
    return stack


async def stop_private_stack(stack: PrivateStack) -> None:
    await stack.stop_workers()
    stack.target_up()
    if os.environ.get("TENANT_CHAOS_KEEP_STACK") == "1":
        print(f"private stack kept: {stack.state} ({stack.ports})")
        return
    await stack.stack("down")
    # Keep the services' own logs (Kafka, PostgreSQL, Redis) beside the workers' for post-mortems
    # of a failed CI run; the rest of the state (data, keys) goes.
    if (stack.state / "logs").is_dir():
        kept = stack.log_dir.with_name(stack.log_dir.name + "-services")
        shutil.copytree(stack.state / "logs", kept, dirs_exist_ok=True)
    await stack.stack("down", "--purge")
    shutil.rmtree(stack.state, ignore_errors=True)


@pytest.fixture(scope="session")
def chaos_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every worker log of the chaos suites (test_secrets.py greps all of them)."""
    return tmp_path_factory.mktemp("chaos-worker-logs")


@pytest.fixture(scope="session")
async def private_stack(tmp_path_factory: pytest.TempPathFactory,
                        chaos_log_dir: Path) -> AsyncIterator[PrivateStack]:
    stack = await start_private_stack(tmp_path_factory.mktemp("private-stack"), chaos_log_dir)
    try:
        yield stack
    finally:
        await stop_private_stack(stack)


@pytest.fixture
async def private_pg(private_stack: PrivateStack) -> AsyncIterator[asyncpg.Connection]:
    conn = await private_stack.connect()
    yield conn
    await conn.close()


@pytest.fixture
async def stack_workers(private_stack: PrivateStack) -> AsyncIterator[PrivateStack]:
    """The private stack; every worker a test starts through it is stopped after the test."""
    yield private_stack
    await private_stack.stop_workers()
    private_stack.target_up()
