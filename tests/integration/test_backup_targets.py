"""The backup target contract, run against a local folder, moto S3 and a real OpenSSH sshd."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import asyncssh
import pytest

from adapters.backup_targets.base import BackupTarget
from domain.errors import PermanentError, TransientError
from tests.backup_target_fixtures import (  # noqa: F401  (fixtures, used by name)
    StackEnv,
    TargetUnderTest,
    stack_env,
    target_under_test,
)

pytestmark = pytest.mark.stack

MiB = 1 << 20
INVALID_KEYS = [
    "", "/abs/key", "t1/../x", "..", "t1//x", "t1/./x", "t1/", "t1/x y", "t1/ä", "t1\\x",
    "t1/x.dump.partial",
]


async def read_all(target: BackupTarget, key: str, chunk_size: int = MiB) -> bytes:
    return b"".join([chunk async for chunk in target.read(key, chunk_size)])


def new_tenant() -> str:
    return f"t_{secrets.token_hex(4)}"


class TestBackupTargetContract:
    async def test_a_20_mib_stream_round_trips_byte_identical(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, key = target_under_test.target, f"{new_tenant()}/b1.dump.zst.age"
        written = hashlib.sha256()
        writer = await target.open_writer(key)
        for _ in range(20):
            chunk = os.urandom(MiB)
            written.update(chunk)
            await writer.write(chunk)
        await writer.commit()

        read, sizes = hashlib.sha256(), []
        async for chunk in target.read(key, chunk_size=300_000):
            read.update(chunk)
            sizes.append(len(chunk))
        assert read.hexdigest() == written.hexdigest()
        assert sum(sizes) == 20 * MiB
        assert max(sizes) <= 300_000

    async def test_nothing_is_visible_before_commit(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, tenant = target_under_test.target, new_tenant()
        key = f"{tenant}/b1.dump.zst.age"
        writer = await target.open_writer(key)
        for _ in range(9):  # past one S3 part, so a multipart upload is in progress
            await writer.write(os.urandom(MiB))
        assert not await target.exists(key)
        assert await target.list(f"{tenant}/") == []
        with pytest.raises(PermanentError) as e:
            await read_all(target, key)
        assert e.value.reason == "not_found"
        await writer.commit()
        assert await target.exists(key)
        assert await target.list(f"{tenant}/") == [key]

    async def test_abort_leaves_nothing_and_is_idempotent(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, tenant = target_under_test.target, new_tenant()
        writer = await target.open_writer(f"{tenant}/b1.dump.zst.age")
        for _ in range(10):
            await writer.write(os.urandom(MiB))
        await writer.abort()
        await writer.abort()
        assert await target.list(f"{tenant}/") == []
        assert [n for n in await target_under_test.raw_names() if tenant in n] == []

    async def test_a_dead_writers_partial_is_discarded_and_nothing_else(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, tenant = target_under_test.target, new_tenant()
        key, other = f"{tenant}/b1.dump.zst.age", f"{tenant}/b2.dump.zst.age"
        await target.put(f"{tenant}/b1.manifest.json", b"{}")  # a committed neighbour stays
        live_other = await target.open_writer(other)  # another key's upload stays
        dead = await target.open_writer(key)  # a worker SIGKILLed mid-upload: never ended
        for w in (dead, live_other):
            for _ in range(9):  # > one 8 MiB S3 part, so a multipart upload exists
                await w.write(os.urandom(MiB))
        assert any(tenant in n for n in await target_under_test.raw_names())

        assert await target.discard_partials(key) == 1
        assert await target.discard_partials(key) == 0  # idempotent

        left = [n for n in await target_under_test.raw_names() if tenant in n]
        assert left and all("b1.dump" not in n for n in left), left
        assert any("b2.dump" in n for n in left), left
        assert await target.list(f"{tenant}/") == [f"{tenant}/b1.manifest.json"]
        await live_other.commit()  # the other writer was not disturbed
        assert await target.exists(other)
        # and the discarded key can be written afresh
        assert await target.discard_partials(f"{new_tenant()}/none.dump.zst.age") == 0

    async def test_abort_before_any_write_is_safe(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, tenant = target_under_test.target, new_tenant()
        writer = await target.open_writer(f"{tenant}/b1.manifest.json")
        await writer.abort()
        assert [n for n in await target_under_test.raw_names() if tenant in n] == []

    async def test_put_stores_a_small_object(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, key = target_under_test.target, f"{new_tenant()}/b1.manifest.json"
        await target.put(key, b'{"backup_id": "b1"}')
        assert await target.exists(key)
        assert await read_all(target, key) == b'{"backup_id": "b1"}'
        assert await read_all(target, key, chunk_size=4) == b'{"backup_id": "b1"}'

    async def test_an_empty_object_round_trips(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, key = target_under_test.target, f"{new_tenant()}/empty.json"
        writer = await target.open_writer(key)
        await writer.commit()
        assert await target.exists(key)
        assert await read_all(target, key) == b""

    async def test_commit_never_replaces_an_existing_object(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, tenant = target_under_test.target, new_tenant()
        key = f"{tenant}/b1.manifest.json"
        await target.put(key, b"first")
        with pytest.raises(PermanentError) as e:
            await target.put(key, b"second")
        assert e.value.reason == "already_exists"

        writer = await target.open_writer(key)
        for _ in range(9):
            await writer.write(os.urandom(MiB))
        with pytest.raises(PermanentError) as e:
            await writer.commit()
        assert e.value.reason == "already_exists"
        await writer.abort()
        assert await read_all(target, key) == b"first"
        assert [n for n in await target_under_test.raw_names() if tenant in n] == [
            n for n in await target_under_test.raw_names() if n.endswith(key)
        ]

    async def test_delete_is_idempotent(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, key = target_under_test.target, f"{new_tenant()}/b1.manifest.json"
        await target.delete(key)  # never existed
        await target.put(key, b"{}")
        await target.delete(key)
        await target.delete(key)
        assert not await target.exists(key)

    async def test_list_returns_the_keys_under_a_prefix(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target, t = target_under_test.target, new_tenant()
        keys = [f"{t}1/b1.manifest.json", f"{t}1/b2.manifest.json", f"{t}2/b3.manifest.json",
                f"{t}10/b4.manifest.json", f"{t}1/nested/b5.manifest.json"]
        for key in keys:
            await target.put(key, b"{}")
        assert await target.list(f"{t}1/") == sorted(
            [f"{t}1/b1.manifest.json", f"{t}1/b2.manifest.json", f"{t}1/nested/b5.manifest.json"]
        )
        assert await target.list(f"{t}1/b") == [f"{t}1/b1.manifest.json", f"{t}1/b2.manifest.json"]
        assert await target.list(f"{t}1") == sorted(k for k in keys if k.startswith(f"{t}1"))
        assert await target.list(f"{t}9/") == []
        assert set(keys) <= set(await target.list(""))

    @pytest.mark.parametrize("key", INVALID_KEYS)
    async def test_invalid_keys_are_refused(
        self, target_under_test: TargetUnderTest, key: str  # noqa: F811
    ) -> None:
        target = target_under_test.target
        with pytest.raises(ValueError):
            target.uri(key)
        with pytest.raises(ValueError):
            await target.open_writer(key)
        with pytest.raises(ValueError):
            await target.put(key, b"x")
        with pytest.raises(ValueError):
            await target.exists(key)
        with pytest.raises(ValueError):
            await target.delete(key)
        with pytest.raises(ValueError):
            target.read(key)  # refused when called, before any iteration
        assert await target_under_test.raw_names() == []

    async def test_reading_a_missing_key_is_not_found(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        with pytest.raises(PermanentError) as e:
            await read_all(target_under_test.target, f"{new_tenant()}/missing.manifest.json")
        assert e.value.reason == "not_found"

    async def test_uri_names_the_kind(
        self, target_under_test: TargetUnderTest  # noqa: F811
    ) -> None:
        target = target_under_test.target
        scheme = {"local": "file://", "s3": "s3://", "sftp": "sftp://"}[target.kind]
        uri = target.uri("t1/b1.manifest.json")
        assert uri.startswith(scheme) and uri.endswith("/t1/b1.manifest.json")


class TestSftpHostKeys:
    async def test_a_different_host_key_is_refused(
        self, stack_env: StackEnv, tmp_path: Path  # noqa: F811
    ) -> None:
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{stack_env['TENANT_SFTP_PORT']} {impostor}")
        target = stack_env.sftp(f"{stack_env['TENANT_SFTP_DIR']}/never", known_hosts=known_hosts)
        with pytest.raises(PermanentError) as e:
            await target.exists("t1/b1.manifest.json")
        assert e.value.reason == "host_key_mismatch"
        await target.close()

    async def test_an_unknown_host_is_refused(
        self, stack_env: StackEnv, tmp_path: Path  # noqa: F811
    ) -> None:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("")
        target = stack_env.sftp(f"{stack_env['TENANT_SFTP_DIR']}/never", known_hosts=known_hosts)
        with pytest.raises(PermanentError) as e:
            await target.list("")
        assert e.value.reason == "host_key_mismatch"

    async def test_a_missing_known_hosts_file_is_refused(
        self, stack_env: StackEnv, tmp_path: Path  # noqa: F811
    ) -> None:
        target = stack_env.sftp("/tmp/never", known_hosts=tmp_path / "absent")
        with pytest.raises(PermanentError) as e:
            await target.exists("t1/b1.manifest.json")
        assert e.value.reason == "host_key_unverifiable"

    def test_known_hosts_cannot_be_left_out(self, stack_env: StackEnv) -> None:  # noqa: F811
        with pytest.raises(ValueError, match="known_hosts"):
            stack_env.sftp("/tmp/never", known_hosts="")

    async def test_it_reconnects_after_the_connection_drops(
        self, stack_env: StackEnv  # noqa: F811
    ) -> None:
        root = f"{stack_env['TENANT_SFTP_DIR']}/contract-{secrets.token_hex(4)}"
        target = stack_env.sftp(root)
        await target.start()
        await target.put("t1/b1.manifest.json", b"{}")
        assert target._conn is not None
        target._conn.close()  # as if the server or the network dropped it
        await target._conn.wait_closed()
        assert await target.exists("t1/b1.manifest.json")
        await (await target._client()).rmtree(root)
        await target.close()


class TestS3Availability:
    async def test_an_unreachable_endpoint_is_transient(self, stack_env: StackEnv) -> None:  # noqa: F811
        env = StackEnv(stack_env, TENANT_S3_ENDPOINT_URL="http://127.0.0.1:1")
        target = env.s3("contract", max_attempts=1, connect_timeout=2.0)
        with pytest.raises(TransientError):
            await target.exists("t1/b1.manifest.json")
        await target.close()

