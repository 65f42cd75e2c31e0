"""tenantctl can be scripted: data alone on stdout, RFC 3339 times, JSON lines from watch."""

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from contracts import topics
from tests.support.cli import RFC3339, tenantctl, times_in
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.stack


async def test_wait_prints_only_the_result_on_stdout(
    session_worker: SessionWorker, tenants: TenantIds
) -> None:
    tenant_id = tenants.new()
    ran = await tenantctl("request", tenant_id, "--wait", "--timeout", "90")
    assert ran.code == 0, str(ran)
    result = ran.json()  # fails if anything but the event is on stdout
    assert result["type"] == "TenantProvisioned"
    assert f"published TenantRequested id={result['causationid']}" in ran.err


async def test_list_filters_hides_tombstones_and_prints_rfc3339(
    session_worker: SessionWorker, tenants: TenantIds, log_dir: Path
) -> None:
    free, pro, gone = tenants.new(), tenants.new(), tenants.new()
    for tenant_id, plan in ((free, "free"), (pro, "pro"), (gone, "free")):
        ran = await tenantctl("request", tenant_id, "--plan", plan, "--wait", "--timeout", "90")
        assert ran.code == 0, str(ran)
    eraser = WorkerProcess(("backup",), log_dir / "cli-list-eraser.log")  # erase jobs run there
    await eraser.start()
    try:
        ran = await tenantctl("erase", gone, "--yes", "--wait", "--timeout", "150", limit_s=200)
    finally:
        await eraser.terminate(60)
    assert ran.code == 0, str(ran)
    assert ran.json()["type"] == "TenantErased"

    listed = (await tenantctl("list", "--json")).json()
    ids = {r["tenant_id"] for r in listed}
    assert {free, pro} <= ids and gone not in ids
    everything = {r["tenant_id"] for r in (await tenantctl("list", "--json", "--all")).json()}
    assert gone in everything
    pros = (await tenantctl("list", "--json", "--plan", "pro")).json()
    assert pro in {r["tenant_id"] for r in pros} and all(r["plan"] == "pro" for r in pros)
    erased = (await tenantctl("list", "--json", "--status", "erased")).json()
    assert gone in {r["tenant_id"] for r in erased}
    assert all(r["status"] == "erased" for r in erased)

    stamps = times_in(listed) + times_in((await tenantctl("status", free, "--json")).json())
    assert stamps, listed
    for key, value in stamps:
        assert RFC3339.match(str(value)), (key, value)


async def test_watch_in_a_pipe_prints_json_lines_and_stops_on_sigterm(
    session_worker: SessionWorker, tenants: TenantIds
) -> None:
    tenant_id = tenants.new()
    assert (await tenantctl("request", tenant_id, "--wait", "--timeout", "90")).code == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tenantctl.cli", "watch", "--from-beginning", cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async def ours() -> dict[str, object]:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                event = json.loads(line)  # every line is one JSON event
                assert RFC3339.match(event["time"]), event
                if event["subject"] == tenant_id:
                    return event  # type: ignore[no-any-return]
            raise AssertionError("watch ended before our event")

        event = await asyncio.wait_for(ours(), 120)
        assert event["type"] == "TenantProvisioned"
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0, (await proc.stderr.read()).decode() if proc.stderr else code
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_dlq_replay_all_replays_each_dead_letter_once(
    session_worker: SessionWorker, publisher: object
) -> None:
    from adapters.kafka.producer import KafkaEventPublisher

    assert isinstance(publisher, KafkaEventPublisher)
    before = {d["id"] for d in (await tenantctl("dlq", "list", "--json")).json()}
    await publisher.publish(topics.LIFECYCLE, b"cli_dlq", b"not json", [])

    async def letter() -> str | None:
        listed = (await tenantctl("dlq", "list", "--json")).json()
        new = [d for d in listed if d["id"] not in before and d["key"] == "cli_dlq"]
        return str(new[0]["id"]) if new else None

    dead = await wait_until(letter, 120, what="the garbage record's dead letter", interval=0.5)
    first = await tenantctl("dlq", "replay", "--all")
    assert first.code == 0, str(first)
    assert dead in first.json()["replayed"]
    second = await tenantctl("dlq", "replay", "--all")
    assert second.code == 0, str(second)
    assert dead not in second.json()["replayed"], str(second)
    again = await tenantctl("dlq", "replay", "--id", dead)  # asked for by id: replayed again
    assert again.code == 0 and again.json()["replayed"] == [dead], str(again)
