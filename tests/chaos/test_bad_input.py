"""The bad-input corpus against the SHARED stack and its session worker (no fault is injected):
each record lands in tenants.dlq with its reason, or, where the envelope is valid and a business
rule refuses it, becomes a *Failed result. The consumer never crashes and its lag returns to zero;
``tenantctl dlq list --json`` shows them; ``tenantctl dlq replay --id P:O`` republishes one after a
fix and it is processed.

Oversized records need a broker that accepts them, so that case runs on the PRIVATE stack (topic
``max.message.bytes`` raised there): with stock broker limits (message.max.bytes ~1 MiB) a record
over TENANT_MAX_MESSAGE_BYTES is refused by the broker at produce time and never reaches us.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from adapters.kafka import dead_letters as dlq
from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import TenantRequested
from contracts.publish import record_of
from runtime.settings import Settings
from tests.chaos.observe import group_lag, read_topic
from tests.chaos.private_stack import PrivateStack
from tests.support import names as ns
from tests.support.kafka import ResultLog, TopicTail, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, http_get

pytestmark = [pytest.mark.stack, pytest.mark.chaos]

INJECTIONS = ["x'; DROP TABLE tenant_service.tenants; --", 'a"; DROP SCHEMA public CASCADE; --',
              "Tenant; --", "$$; SELECT pg_sleep(10); $$", "ä\\x00b", "a" * 64]
Raw = tuple[bytes | None, bytes]  # key, value


def _value(tenant: str, type_: str, data: dict[str, Any], **over: Any) -> bytes:
    eid = str(uuid.uuid4())
    doc: dict[str, Any] = {"specversion": "1.0", "id": eid, "source": "urn:tests", "type": type_,
                           "time": datetime.now(UTC).isoformat(), "subject": tenant,
                           "datacontenttype": "application/json", "correlationid": eid,
                           "data": data}
    doc.update(over)
    for k in [k for k, v in over.items() if v is None]:
        del doc[k]
    return json.dumps(doc).encode()


def dead_letter_corpus(tag: str) -> dict[str, tuple[str, Raw]]:
    """name -> (expected x-dlq-reason, (key, value)); every key is unique to this run."""
    def k(name: str) -> str:
        return f"bad_{tag}_{name}"

    def ok(name: str, **over: Any) -> Raw:
        return k(name).encode(), _value(k(name), "TenantRequested",
                                        {"tenant_id": k(name), "plan": "free"}, **over)

    return {
        "malformed_json": ("invalid_json", (k("mj").encode(), b'{"specversion": "1.0", "id": ')),
        "not_utf8_value": ("invalid_json", (k("nu").encode(), b"\xff\xfe\xfa not utf-8")),
        "empty_value": ("invalid_json", (k("ev").encode(), b"")),
        "json_array": ("not_cloudevent", (k("ja").encode(), b"[1, 2, 3]")),
        "missing_id": ("not_cloudevent", ok("mi", id=None)),
        "id_wrong_type": ("not_cloudevent", ok("iw", id=12345)),
        "spec_version_2": ("not_cloudevent", ok("sv", specversion="2.0")),
        # Extensions are allowed (CloudEvents), but only with the spec's names and value types.
        "extension_bad_name": ("not_cloudevent", ok("ef", **{"Evil-Name": "x"})),
        "extension_object_value": ("not_cloudevent", ok("eo", evil={"nested": 1})),
        "datacontenttype_not_json": ("not_cloudevent", ok("dc", datacontenttype="text/plain")),
        "time_not_a_time": ("not_cloudevent", ok("tt", time="yesterday")),
        "time_without_offset": ("not_cloudevent", ok("tn", time="2026-01-01T00:00:00")),
        "time_far_future": ("time_out_of_range", ok("tf", time="9999-12-31T23:59:59Z")),
        "time_far_past": ("time_out_of_range", ok("tp", time="1970-01-01T00:00:00Z")),
        "unknown_type": ("unknown_type", (k("ut").encode(), _value(
            k("ut"), "TenantTeleported", {"tenant_id": k("ut")}))),
        "wrong_topic_type": ("wrong_topic", (k("wt").encode(), _value(
            k("wt"), "BackupDue", {"tenant_id": k("wt")}))),
        "missing_plan": ("invalid_data", (k("mp").encode(), _value(
            k("mp"), "TenantRequested", {"tenant_id": k("mp")}))),
        "plan_wrong_type": ("invalid_data", (k("pw").encode(), _value(
            k("pw"), "TenantRequested", {"tenant_id": k("pw"), "plan": 5}))),
        "extra_data_field": ("invalid_data", (k("xd").encode(), _value(
            k("xd"), "TenantRequested", {"tenant_id": k("xd"), "plan": "free", "x": 1}))),
        "key_differs_from_subject": ("key_mismatch", (k("other").encode(), ok("km")[1])),
        "no_key": ("key_mismatch", (None, ok("nk")[1])),
        "not_utf8_key": ("key_mismatch", (b"\xff\xfe" + k("nk8").encode(), ok("nk8")[1])),
        "subject_differs_from_data": ("key_mismatch", (k("sd").encode(), _value(
            k("sd"), "TenantRequested", {"tenant_id": k("sd2"), "plan": "free"}))),
        # (a valid lifecycle request for a tenant id that can't exist is not a dead letter: it
        # is attributable, and answers TenantSuspendFailed{unknown_tenant}; see test_lifecycle)
    }


async def _send_raw(publisher: KafkaEventPublisher, key: bytes | None, value: bytes,
                    topic: str = topics.LIFECYCLE) -> None:
    await publisher.publish(topic, key, value, [])


def tenantctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantctl.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_bad_input_corpus(settings: Settings, publisher: KafkaEventPublisher,
                                session_worker: SessionWorker, results: ResultLog,
                                pg: asyncpg.Connection, tenants: TenantIds) -> None:
    tag = secrets.token_hex(3)
    corpus = dead_letter_corpus(tag)
    worker = session_worker.process
    async with TopicTail(settings, topics.DLQ) as dead:
        for _, (key, value) in corpus.values():
            await _send_raw(publisher, key, value)

        # valid envelopes a business rule refuses: *Failed results, never a dead letter
        refused: dict[str, tuple[Envelope, str]] = {}
        for i, inj in enumerate(INJECTIONS):
            env = codec.envelope_for(TenantRequested(tenant_id=inj, plan="free"),
                                     source="urn:tests")
            refused[f"tenant_id_injection_{i}"] = (env, "invalid_tenant_id")
            t = tenants.new()
            env = codec.envelope_for(TenantRequested(tenant_id=t, plan=inj[:64]),
                                     source="urn:tests")
            refused[f"plan_injection_{i}"] = (env, "unknown_plan")
        for env, _ in refused.values():
            await publish(publisher, env)
        # valid and accepted: injection strings in free-text fields and envelope ids, and a
        # time just inside the clock window (an hour old: a consumer catching up)
        accepted: dict[str, Envelope] = {}
        for name, over in {
            "display_name_injection": {"display_name": INJECTIONS[1][:200]},
            "hour_old_time": {"time": datetime.now(UTC) - timedelta(hours=1)},
            "envelope_id_injection": {"id": INJECTIONS[0] + secrets.token_hex(4)},
        }.items():
            t = tenants.new()
            data = {"tenant_id": t, "plan": "free"}
            if "display_name" in over:
                data["display_name"] = over.pop("display_name")
            env = codec.envelope_for(TenantRequested(**data), source="urn:tests")
            env = env.model_copy(update={"correlationid": env.id, **over,
                                         "source": "urn:tests' OR '1'='1"})
            accepted[name] = env
            await publish(publisher, env)

        # every dead letter arrives with its reason
        def letters() -> dict[bytes | None, Any] | None:
            got = {r.value or b"": r for r in dead.records}
            return got if all(v in got for _, (_, (_, v)) in corpus.items()) else None

        try:
            got = await wait_until(letters, 90, what="every bad record dead-lettered")
        except AssertionError:
            have = {r.value or b"" for r in dead.records}
            missing = [n for n, (_, (_, v)) in corpus.items() if v not in have]
            raise AssertionError(f"not dead-lettered: {missing}") from None
        wrong = {}
        for name, (reason, (key, value)) in corpus.items():
            headers = dict(got[value].headers)
            if headers.get(dlq.REASON, b"").decode() != reason or got[value].key != key:
                wrong[name] = (reason, headers.get(dlq.REASON), headers.get(dlq.DETAIL))
        assert not wrong, wrong

        answers = await results.all_of([e.id for e, _ in refused.values()], 90)
        for name, (env, reason) in refused.items():
            assert answers[env.id].type == "TenantProvisioningFailed", (name, answers[env.id])
            assert answers[env.id].data["reason"] == reason, (name, answers[env.id].data)
        ok = await results.all_of([e.id for e in accepted.values()], 90)
        assert {n: ok[e.id].type for n, e in accepted.items()} == \
            dict.fromkeys(accepted, "TenantProvisioned")

    # nothing leaked into SQL: the registry is intact and no schema was made of an injection
    assert await pg.fetchval(f"SELECT count(*) FROM {ns.CONTROL}.tenants") > 0
    assert await pg.fetchval("SELECT to_regnamespace('public') IS NOT NULL")
    assert not await pg.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%DROP%' OR nspname LIKE '%;%'")
    # the consumer never crashed and caught up
    assert worker.running, worker.log_tail()
    assert (await http_get(worker.port, "/healthz"))[0] == 200
    await wait_until(lambda: _lag_zero(settings), 90, what="tenant-provisioner lag 0",
                     interval=1.0)

    # tenantctl dlq list --json shows them with their reasons
    listed = await asyncio.to_thread(tenantctl, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_key = {d["key"]: d for d in json.loads(listed.stdout)}
    for name, (reason, (key, _)) in corpus.items():
        if key is not None and key.startswith(b"bad_"):
            shown = by_key.get(key.decode())
            assert shown is not None and shown["reason"] == reason, (name, shown)
            group = ns.names().topics.group(topics.PROVISIONER_GROUP)
            assert shown["group"] == group and shown["detail"], shown


async def _lag_zero(settings: Settings) -> bool:
    try:
        return await group_lag(settings, topics.PROVISIONER_GROUP, topics.LIFECYCLE) == 0
    except KafkaError:
        return False


async def test_dlq_replay_after_fix(settings: Settings, publisher: KafkaEventPublisher,
                                    session_worker: SessionWorker, results: ResultLog,
                                    tenants: TenantIds) -> None:
    """A deactivation stamped ahead of the consumer's clock by more than
    TENANT_EVENT_MAX_FUTURE_S (a skewed producer) is dead-lettered (time_out_of_range); once the
    clocks agree, replaying that dead letter suspends the tenant. (A request for an unknown
    tenant is no dead letter: it is answered, TenantSuspendFailed{unknown_tenant}.)"""
    t = tenants.new()
    env = requested(t)
    await publish(publisher, env)
    assert (await results.first(env.id)).type == "TenantProvisioned"
    ahead = datetime.now(UTC) + timedelta(seconds=settings.event_max_future_s + 5)
    value = _value(t, "TenantDeactivated", {"tenant_id": t, "reason": "unpaid"},
                   time=ahead.isoformat())
    event_id = json.loads(value)["id"]
    async with TopicTail(settings, topics.DLQ) as dead:
        await _send_raw(publisher, t.encode(), value)
        record = await wait_until(lambda: [r for r in dead.records if r.value == value], 60,
                                  what="the deactivation dead-lettered")
    letter = record[0]
    assert dict(letter.headers)[dlq.REASON] == b"time_out_of_range"
    assert results.caused_by(event_id) == []
    # the fix: the clocks agree (the consumer's clock reaches the window the event is in)
    await wait_until(
        lambda: datetime.now(UTC) + timedelta(seconds=settings.event_max_future_s - 1) > ahead,
        30, what="the event's time to come within the window", interval=0.2)

    replay = await asyncio.to_thread(tenantctl, "dlq", "replay", "--id",
                                     f"{letter.partition}:{letter.offset}")
    assert replay.returncode == 0, replay.stderr
    assert f"{letter.partition}:{letter.offset}" in replay.stdout
    answer = await results.first(event_id, 60)
    assert answer.type == "TenantSuspended", answer
    assert len({(e.type, e.id) for e in results.caused_by(event_id)}) == 1


@pytest.mark.chaos
async def test_oversized_record_is_dead_lettered(private_stack: PrivateStack) -> None:
    """On the PRIVATE stack, with topics that accept 2 MiB: a record over TENANT_MAX_MESSAGE_BYTES
    goes to tenants.dlq as too_large and the partition moves on."""
    s = private_stack
    settings = s.settings(max_message_bytes=3 << 20)  # our producer may send it
    worker = await s.worker(["provisioner", "relay"], "oversize")
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.alter_configs([
                ConfigResource(ConfigResourceType.TOPIC, name,
                               configs={"max.message.bytes": str(2 << 20)})
                for name in (topics.LIFECYCLE, topics.DLQ)])
        finally:
            await admin.close()
        producer = KafkaEventPublisher(settings.kafka, client_id="chaos-oversize")
        await producer.start()
        try:
            t = f"big_{secrets.token_hex(4)}"
            big = _value(t, "TenantRequested", {"tenant_id": t, "plan": "free",
                                                "display_name": "x" * (1 << 20)})
            assert len(big) > 1 << 20
            env = requested(f"after_{secrets.token_hex(4)}")
            await producer.publish(topics.LIFECYCLE, t.encode(), big, [])
            await producer.publish(*record_of(env).message)
        finally:
            await producer.stop()

        async def landed() -> Any:
            return [r for r in await read_topic(settings, topics.DLQ) if r.key == t.encode()]

        letter = (await wait_until(landed, 60, what="oversized record dead-lettered",
                                   interval=1.0))[0]
        assert dict(letter.headers)[dlq.REASON] == b"too_large"
        assert letter.value == big

        async def answered() -> bool:
            events = await read_topic(settings, topics.EVENTS)
            return any(json.loads(r.value).get("causationid") == env.id for r in events)

        await wait_until(answered, 60, what="the next record processed", interval=1.0)
        assert worker.running
    finally:
        await worker.terminate(30)


async def test_nul_in_tenant_id_is_a_failed_result(publisher: KafkaEventPublisher,
                                                   session_worker: SessionWorker,
                                                   results: ResultLog) -> None:
    env = codec.envelope_for(TenantRequested(tenant_id="nul\u0000id", plan="free"),
                             source="urn:tests")
    await publish(publisher, env)
    answer = await results.first(env.id, 30)
    assert answer.type == "TenantProvisioningFailed"
    assert answer.data["reason"] == "invalid_tenant_id"
