"""Secrets stay secret (PRIVATE stack): the Postgres password, the S3 secret key and age identities
never appear in worker logs (every chaos worker's log of this session), on tenants.events or
tenants.dlq, in the outbox or in manifests; artifacts at rest are encrypted; a backup worker that
does not know the SFTP server's host key answers BackupFailed and stores nothing.

Runs after the other chaos modules (file order), so it greps the logs of all their workers; run
alone, it greps its own worker's."""

# ruff: noqa: S608, ASYNC221, ASYNC240

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import asyncpg
import pytest
from dotenv import dotenv_values

from contracts import codec, topics
from contracts.events import BackupDue, TenantRequested
from tests.chaos.observe import EventsTail, InputPublisher, read_topic
from tests.chaos.private_stack import FAST_ENV, PrivateStack
from tests.support import names as ns
from tests.support.backups import add_users, local_path, unwrap, write_identity
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.chaos

AGE_SECRET = b"AGE-SECRET-KEY-"


def _secrets(stack: PrivateStack) -> dict[str, bytes]:
    shared = dotenv_values(REPO_ROOT / ".env")
    found = {
        "private pg password": stack.pg_password.encode(),
        "s3 secret key (chaos workers)": FAST_ENV["TENANT_S3_SECRET_ACCESS_KEY"].encode(),
        "age identity prefix": AGE_SECRET,
        "master identity": stack.master_key.read_text().strip().splitlines()[-1].encode(),
    }
    dsn = shared.get("TENANT_PG_DSN") or ""
    if "@" in dsn and ":" in dsn.split("@")[0][len("postgresql://"):]:
        found["shared pg password"] = dsn.split("@")[0].rsplit(":", 1)[1].encode()
    return found


async def test_no_secret_in_logs_events_or_manifests(private_stack: PrivateStack,
                                                     chaos_log_dir: Path) -> None:
    s = private_stack
    worker = await s.worker(["provisioner", "relay", "backup"], "secrets")
    settings = s.settings()
    conn = await s.connect()
    try:
        t = f"sec_{secrets.token_hex(4)}"
        marker = f"CHAOS-PLAINTEXT-{secrets.token_hex(8)}"
        async with InputPublisher(settings) as pub, EventsTail(settings) as tail:
            req = await pub.send(codec.envelope_for(TenantRequested(tenant_id=t, plan="free")))
            await tail.wait_for({req.envelope.id}, 60, "provisioning")
            await add_users(conn, t, [f"{marker}-{i}" for i in range(3)])
            due = await pub.send(codec.envelope_for(BackupDue(tenant_id=t)))
            await tail.wait_for({due.envelope.id}, 90, "the backup")
            done = tail.by_cause[due.envelope.id][0].envelope
        assert done.type == "BackupCompleted", done
        artifact = local_path(done.data["uri"]).read_bytes()
        assert artifact.startswith(b"age-encryption.org/v1"), artifact[:40]
        assert marker.encode() not in artifact
        # the check above can fail: the decrypted dump does hold the marker
        wrapped = await conn.fetchval(
            f"SELECT wrapped_identity FROM {ns.CONTROL}.tenant_keys WHERE tenant_id = $1", t)
        key = write_identity(s.state, unwrap(bytes(wrapped), s.master_key))
        plain = subprocess.run(["bash", "-o", "pipefail", "-c", 'age -d -i "$1" | zstd -d -c',
                                "x", str(key)], input=artifact, capture_output=True, check=True)
        assert marker.encode() in plain.stdout
        key.unlink()

        outbox = [bytes(r[0]) for r in await conn.fetch(f"SELECT payload FROM {ns.CONTROL}.outbox")]
    finally:
        await conn.close()
        await worker.terminate(30)

    places: dict[str, bytes] = {}
    for path in sorted(chaos_log_dir.glob("*.log")):
        places[f"log {path.name}"] = path.read_bytes()
    # Its own worker's log at least (it handled a backup with every secret in reach); run with
    # the other chaos modules, theirs too.
    own = [data for where, data in places.items() if where.startswith("log secrets-")]
    assert own and b"backup" in own[0], f"this test's worker logged no backup: {sorted(places)}"
    for topic in (topics.EVENTS, topics.DLQ):
        places[topic] = b"\n".join((r.value or b"") + b"".join(v for _, v in r.headers or ())
                                   for r in await read_topic(settings, topic))
    places["outbox"] = b"\n".join(outbox)
    manifests = list(s.backup_dir.rglob("*.manifest.json"))
    assert manifests
    places["manifests"] = b"\n".join(m.read_bytes() for m in manifests)
    leaks = [f"{what} in {where}" for what, value in _secrets(s).items() if value
             for where, data in places.items() if value in data]
    assert not leaks, leaks


@pytest.mark.needs_tool("sshd")
async def test_sftp_unknown_host_key_is_refused(stack_workers: PrivateStack,
                                                tmp_path: Path) -> None:
    """Worker level: known_hosts lists another key for the (shared) sshd -> BackupFailed, and the
    SFTP folder gets nothing. The shared sshd is only connected to, never changed."""
    s = stack_workers
    shared = dotenv_values(REPO_ROOT / ".env")
    if not shared.get("TENANT_SFTP_HOST"):
        pytest.skip("the shared stack has no sshd")
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{shared['TENANT_SFTP_HOST']}]:{shared['TENANT_SFTP_PORT']} "
                     + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n")
    folder = f"{shared['TENANT_SFTP_DIR']}/chaos-{secrets.token_hex(4)}"
    await s.worker(["provisioner", "relay"], "sftp-lifecycle")
    worker = await s.worker(["backup"], "sftp-wrong-host", {
        "TENANT_BACKUP_TARGET": "sftp", "TENANT_SFTP_KNOWN_HOSTS": str(wrong),
        "TENANT_SFTP_DIR": folder, "TENANT_BACKUP_MAX_ATTEMPTS": "2",
    })
    settings = s.settings()
    t = f"sftp_{secrets.token_hex(4)}"
    async with InputPublisher(settings) as pub, EventsTail(settings) as tail:
        req = await pub.send(codec.envelope_for(TenantRequested(tenant_id=t, plan="free")))
        await tail.wait_for({req.envelope.id}, 60, "provisioning")
        due = await pub.send(codec.envelope_for(BackupDue(tenant_id=t)))
        await tail.wait_for({due.envelope.id}, 90, "the backup's answer")
        answer = tail.by_cause[due.envelope.id][0].envelope
    assert answer.type == "BackupFailed", answer
    conn: asyncpg.Connection = await s.connect()
    try:
        assert await conn.fetchval(
            f"SELECT count(*) FROM {ns.CONTROL}.backups WHERE tenant_id = $1", t) == 0
    finally:
        await conn.close()
    assert "host key" in worker.log_text().lower() or "hostkey" in worker.log_text().lower(), \
        worker.log_tail()
    assert not Path(folder).exists() or not any(Path(folder).rglob("*"))
