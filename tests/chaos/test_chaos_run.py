"""The chaos run: a seeded random plan of mixed input events against 3 provisioners, 2 backup
workers, the relay, the scheduler and a metrics worker on the PRIVATE stack, while a random worker
is SIGKILLed every few seconds (and restarted), the broker and PostgreSQL are each restarted once
and the backup target is unavailable for a while. Then everything is checked from the outside.

Replay a run with ``TENANT_CHAOS_SEED=<seed>`` (printed). Scale: ``TENANT_CHAOS_SCALE`` (1.0 = the
full 200 tenants / >= 1,000 events, the default; 0.5 = 100 / ~500); to iterate, e.g.
``TENANT_CHAOS_SCALE=0.2 TENANT_CHAOS_FAULT_WINDOW_S=45``. ``TENANT_CHAOS_RESTORES``: how many
tenants get a backup, post-backup writes and a restore under the faults (default 3% of them, >= 2).
Erasures, archives, repeated erasures and restores: see erase_restore.py.
"""

# SQL below interpolates only constants of the test.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from adapters.migration_files import load_migrations
from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import (
    BackupDue,
    Event,
    TenantDeactivated,
    TenantMigrationDue,
    TenantReactivated,
    TenantRequested,
)
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.chaos import erase_restore as er
from tests.chaos.observe import EventsTail, InputPublisher, read_topic
from tests.chaos.private_stack import PrivateStack
from tests.support import names as ns
from tests.support.backups import local_path, stock_restore_list, unwrap, write_identity
from tests.support.postgres import template_version
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("TENANT_CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
SCALE = float(os.environ.get("TENANT_CHAOS_SCALE", "1.0"))
FAULTS_S = float(os.environ.get("TENANT_CHAOS_FAULT_WINDOW_S", "90"))  # faults stop after this
PUBLISH_S = FAULTS_S * 0.75  # the inputs are spread over this, so faults hit work in flight
TARGET_DOWN_S = float(os.environ.get("TENANT_CHAOS_TARGET_DOWN_S", "10"))
RESTORE_SAMPLE = int(os.environ.get("TENANT_CHAOS_RESTORE_SAMPLE", "25"))
SETTLE_S = 240.0
RESTORES = os.environ.get("TENANT_CHAOS_RESTORES")  # default: 3% of the tenants, at least 2

LIFECYCLE_GROUP, BACKUP_GROUP = topics.PROVISIONER_GROUP, topics.BACKUP_GROUP
# name -> roles: every kind of worker, each its own process
FLEET = {"prov-1": ["provisioner"], "prov-2": ["provisioner"], "prov-3": ["provisioner"],
         "backup-1": ["backup"], "backup-2": ["backup"], "relay": ["relay"],
         "scheduler": ["scheduler"], "metrics": ["metrics"]}
DELIVERY_LOG_EVENTS = {"handled", "accepted", "duplicate_skipped", "dead_lettered", "handed_back"}


# ---- the plan ------------------------------------------------------------------------------------


@dataclass
class Planned:
    env: Envelope
    kind: str  # request, conflict, deactivate, reactivate, migrate, backup, erase, reerase,
    # restore, duplicate
    tenant: str


@dataclass
class Plan:
    tenants: list[str]
    phases: list[list[Planned]] = field(default_factory=list)
    final: dict[str, str] = field(default_factory=dict)  # tenant -> active/suspended/erased
    erased: set[str] = field(default_factory=set)
    restores: list[er.RestoreCase] = field(default_factory=list)  # published as they go

    @property
    def events(self) -> list[Planned]:
        return [p for phase in self.phases for p in phase]

    @property
    def driven(self) -> list[Planned]:
        """The restore cases' inputs (known once published), each once."""
        ids: dict[str, Planned] = {}
        for case in self.restores:
            for env in case.sent:
                kind = {"BackupDue": "backup", "RestoreRequested": "restore"}.get(env.type, "erase")
                ids.setdefault(env.id, Planned(env, kind, case.tenant))
        return list(ids.values())

    @property
    def originals(self) -> list[Planned]:
        return [p for p in self.events if p.kind != "duplicate"] + self.driven


def _env(event: Event) -> Envelope:
    return codec.envelope_for(event, source="urn:chaos")


def make_plan(rng: random.Random, tag: str, n_tenants: int, version: int) -> Plan:
    tenants = [f"ch{tag}_{i:03d}" for i in range(n_tenants)]
    plan = Plan(tenants, final={t: "active" for t in tenants})
    history: list[Planned] = []

    def dup_maybe(out: list[Planned], p: float) -> None:
        if history and rng.random() < p:
            old = rng.choice(history)
            out.append(Planned(old.env, "duplicate", old.tenant))

    # A: every tenant is requested; a few get a conflicting second request (another plan)
    phase: list[Planned] = []
    for t in tenants:
        phase.append(Planned(_env(TenantRequested(tenant_id=t, plan="free")), "request", t))
        history.append(phase[-1])
        if rng.random() < 0.05:
            phase.append(Planned(_env(TenantRequested(tenant_id=t, plan="pro")), "conflict", t))
            history.append(phase[-1])
        dup_maybe(phase, 0.12)
    plan.phases.append(phase)
    n_restores = int(RESTORES) if RESTORES else max(2, n_tenants * 3 // 100)
    request_of = {p.tenant: p.env.id for p in plan.phases[0] if p.kind == "request"}
    plan.restores = er.restore_cases(rng, tenants, request_of, n_restores)
    # a restore tenant has no other lifecycle event: its rows are the check
    others = [t for t in tenants if t not in {c.tenant for c in plan.restores}]

    # B: per tenant a random sequence; tenants interleaved, each tenant's own order kept
    queues: dict[str, list[Planned]] = {}
    for t in others:
        ops = []
        for _ in range(rng.randint(2, 5)):
            kind = rng.choices(["deactivate", "reactivate", "migrate", "backup"], [3, 3, 2, 2])[0]
            event = _lifecycle_event(kind, t, version, tag)
            ops.append(Planned(_env(event), kind, t))
            if kind == "deactivate":
                plan.final[t] = "suspended"
            elif kind == "reactivate":
                plan.final[t] = "active"
        queues[t] = ops
    phase = []
    while queues:
        t = rng.choice(sorted(queues))
        phase.append(queues[t].pop(0))
        history.append(phase[-1])
        if not queues[t]:
            del queues[t]
        dup_maybe(phase, 0.12)
    plan.phases.append(phase)

    # C: erasures (the tenant's last event), plus duplicates of anything before
    phase = []
    for t in rng.sample(others, max(1, n_tenants * 15 // 100)):
        phase.append(Planned(_env(er.erase_event(rng, t)), "erase", t))
        history.append(phase[-1])
        plan.final[t] = "erased"
        plan.erased.add(t)
        dup_maybe(phase, 0.3)
    # a second erase (a new event id) of some: it must answer the first erase's archive id
    for t, env in er.repeat_erasures(rng, sorted(plan.erased)):
        phase.append(Planned(env, "reerase", t))
    for _ in range(n_tenants // 10):
        dup_maybe(phase, 1.0)
    plan.phases.append(phase)
    for case in plan.restores:
        if case.erase is not None:  # this one's restore races an erasure
            plan.final[case.tenant] = "erased"
            plan.erased.add(case.tenant)
    return plan


def _lifecycle_event(kind: str, t: str, version: int, tag: str) -> Event:
    if kind == "deactivate":
        return TenantDeactivated(tenant_id=t, reason="chaos")
    if kind == "reactivate":
        return TenantReactivated(tenant_id=t)
    if kind == "migrate":
        return TenantMigrationDue(tenant_id=t, target_version=version, rollout_id=f"chaos-{tag}")
    return BackupDue(tenant_id=t)


# ---- migrations that really migrate ------------------------------------------------------------


def legacy_tenants(rng: random.Random, plan: Plan, version: int, tag: str) -> list[str]:
    """Half the tenants exist before the run at the version before ``version`` (made directly,
    as an older release made them); each gets a TenantMigrationDue to ``version`` in phase B,
    after its own earlier events, so the run's migrations do real DDL under the faults. Their
    TenantRequested is answered TenantProvisioned (already there), as for any duplicate."""
    assert version >= 2, f"template version {version}: no older version to migrate from"
    # The restore cases get no other lifecycle events: their checks compare rows with a backup.
    candidates = [t for t in plan.tenants if t not in {c.tenant for c in plan.restores}]
    legacy = sorted(rng.sample(candidates, len(candidates) // 2))
    migrating = {p.tenant for p in plan.phases[1] if p.kind == "migrate"}
    for t in legacy:
        if t not in migrating:
            event = _lifecycle_event("migrate", t, version, tag)
            plan.phases[1].append(Planned(_env(event), "migrate", t))
    return legacy


async def create_legacy(conn: asyncpg.Connection, tenants: list[str], version: int) -> None:
    steps = [m for m in load_migrations(TENANT_DIR) if m.version < version]
    store = ns.tenant_store()
    for t in tenants:
        async with conn.transaction():
            await store.create(conn, t, "free", steps)


async def check_migrated(conn: asyncpg.Connection, plan: Plan, legacy: list[str]) -> list[str]:
    """Every legacy tenant still there has exactly the columns of a tenant made at the target."""
    async def columns(t: str) -> set[tuple[str, str, str]]:
        return {(r["table_name"], r["column_name"], r["data_type"]) for r in await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = $1", ns.tenant(t))}

    fresh = [t for t in plan.tenants if t not in legacy and t not in plan.erased]
    kept = [t for t in legacy if t not in plan.erased]
    if not fresh or not kept:
        return [f"nothing to compare: fresh {len(fresh)}, migrated {len(kept)}"]
    want = await columns(fresh[0])
    problems = []
    for t in kept:
        if (got := await columns(t)) != want:
            problems.append(f"{t}: columns after migration differ: missing {sorted(want - got)},"
                            f" extra {sorted(got - want)}")
    return problems


def expected_types(p: Planned, plan: Plan) -> set[str]:
    if p.kind == "restore" and p.tenant in plan.erased:  # raced by an erasure: either may win
        return {"RestoreCompleted", "RestoreFailed"}
    if p.kind == "backup":
        # a backup racing its tenant's erasure may find it gone: either answer is one result
        return {"BackupCompleted", "BackupFailed"} if p.tenant in plan.erased else {"BackupCompleted"}
    return {"request": {"TenantProvisioned"}, "conflict": {"TenantProvisioningFailed"},
            "deactivate": {"TenantSuspended"}, "reactivate": {"TenantResumed"},
            "migrate": {"TenantMigrated"}, "erase": {"TenantErased"},
            "reerase": {"TenantErased"}, "restore": {"RestoreCompleted"}}[p.kind]


# ---- the fleet and the faults ----------------------------------------------------------------------


class Fleet:
    def __init__(self, stack: PrivateStack) -> None:
        self.stack = stack
        self.procs: dict[str, WorkerProcess] = {}
        self.faults: Counter[str] = Counter()
        self.restarting: dict[str, asyncio.Task[None]] = {}
        self.timeline: list[str] = []
        self._t0 = time.monotonic()

    def note(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self._t0:6.1f}s {what}")
        print(self.timeline[-1], flush=True)

    async def start(self, name: str) -> None:
        self.procs[name] = await self.stack.worker(FLEET[name], f"chaos-{name}")

    async def start_all(self) -> None:
        for name in FLEET:  # one by one: 8 interpreters importing at once starve 2 cores
            await self.start(name)

    async def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a random running worker; its replacement starts in the background, so the
        kill cadence does not wait for a restart (restarts overlap other faults)."""
        up = sorted(n for n, p in self.procs.items() if p.running and n not in self.restarting)
        if not up:
            return
        await self.kill(rng.choice(up))

    async def kill(self, name: str, fault: str = "sigkill") -> None:
        proc = self.procs[name]
        if not proc.running or name in self.restarting:
            return
        await proc.kill()
        self.faults[fault] += 1
        self.note(f"SIGKILL {name} (pid {proc.pid}){'' if fault == 'sigkill' else ' ' + fault}")
        self.restarting[name] = asyncio.create_task(self._restart(name))

    async def kill_backup_workers(self) -> None:
        """Both backup workers at once: whichever holds a running job's lease dies mid-job."""
        for name in ("backup-1", "backup-2"):
            await self.kill(name, "sigkill_mid_restore")

    async def _restart(self, name: str) -> None:
        try:
            await self.start(name)
        finally:
            del self.restarting[name]

    async def restarts_done(self) -> None:
        await asyncio.gather(*list(self.restarting.values()))

    async def faults_loop(self, rng: random.Random, until: float) -> None:
        now = time.monotonic
        t0 = now()
        w = until - t0
        kafka_at, pg_at = t0 + rng.uniform(0.15, 0.3) * w, t0 + rng.uniform(0.45, 0.6) * w
        target_at = t0 + rng.uniform(0.3, 0.6) * w
        done: set[str] = set()
        while now() < until or len(done) < 3:
            if "kafka" not in done and now() >= kafka_at:
                self.note("kafka: SIGTERM broker")
                await self.stack.kafka_down()
                await self.stack.kafka_up()
                self.faults["kafka_restart"] += 1
                self.note("kafka: back")
                done.add("kafka")
            elif "pg" not in done and now() >= pg_at:
                self.note("postgres: pg_ctl restart -m fast")
                await self.stack.postgres_restart()
                self.faults["postgres_restart"] += 1
                self.note("postgres: back")
                done.add("pg")
            elif "target" not in done and now() >= target_at:
                self.note(f"backup target: down for {TARGET_DOWN_S:.0f}s")
                self.stack.target_down()
                self.faults["target_outage"] += 1
                asyncio.get_running_loop().call_later(TARGET_DOWN_S, self._target_back)
                done.add("target")
            else:
                await self.kill_one(rng)
            await asyncio.sleep(rng.uniform(2.0, 5.0))  # the fault cadence (an injected condition)

    def _target_back(self) -> None:
        self.stack.target_up()
        self.note("backup target: back")


async def publish_paced(plan: Plan, pub: InputPublisher, tail: EventsTail, fleet: Fleet) -> None:
    """Everything in plan order, paced over PUBLISH_S. A backup waits until its tenant's request
    was answered (another topic: Kafka orders nothing between them), the rest of the plan goes on."""
    request_of = {p.tenant: p.env.id for p in plan.events if p.kind == "request"}
    events = plan.events
    pace = PUBLISH_S / len(events)
    deferred: list[Planned] = []
    for i, p in enumerate(events):
        ready = [d for d in deferred if request_of[d.tenant] in tail.by_cause]
        for d in ready:
            deferred.remove(d)
            await pub.send(d.env)
        # A backup (or a duplicate of one: same id, and whichever copy comes first is the
        # effect) waits for its tenant's provisioning, which travels on another topic.
        if p.env.type == "BackupDue" and request_of[p.tenant] not in tail.by_cause:
            deferred.append(p)
        else:
            await pub.send(p.env)
        if i in (len(plan.phases[0]), len(plan.phases[0]) + len(plan.phases[1])):
            fleet.note(f"publishing: {i} of {len(events)} events")
        await asyncio.sleep(pace)  # the load profile (an injected condition), not a wait
    for d in deferred:
        await tail.wait_for({request_of[d.tenant]}, SETTLE_S, f"request of {d.tenant}")
        await pub.send(d.env)
    fleet.note(f"published all {len(events)} events ({len(deferred)} backups deferred)")


# ---- log statistics ----------------------------------------------------------------------------


def log_stats(log_dir: Path, our_ids: set[str]) -> Counter[str]:
    """Counts from the workers' logs; ``swaps:<job id>`` counts each restore job's swaps."""
    stats: Counter[str] = Counter()
    for path in log_dir.glob("chaos-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            ev = rec.get("event")
            if ev in ("retrying", "job_retry_scheduled", "handed_back"):
                stats["retries"] += 1
            if ev == "circuit_open":
                stats["circuit_waits"] += 1
            if ev == "duplicate_skipped":
                stats["duplicates_suppressed"] += 1
            if ev in DELIVERY_LOG_EVENTS and rec.get("event_id") in our_ids:
                stats["deliveries"] += 1
            if ev == "restore_swapped":
                stats[f"swaps:{rec.get('job_id')}"] += 1
            if ev == "restore_resumed_after_swap":
                stats["restores_resumed"] += 1
    return stats


# ---- the test ------------------------------------------------------------------------------------


async def test_chaos_run(stack_workers: PrivateStack, chaos_log_dir: Path) -> None:
    stack = stack_workers
    rng = random.Random(SEED)
    tag = "".join(rng.choice("abcdefghijkmnpqrstuvwxyz") for _ in range(4))
    n_tenants = max(10, int(200 * SCALE))
    version = template_version()
    plan = make_plan(rng, tag, n_tenants, version)
    legacy = legacy_tenants(rng, plan, version, tag)
    print(f"\nchaos seed={SEED} scale={SCALE} tenants={n_tenants} events={len(plan.events)}"
          f" (replay: TENANT_CHAOS_SEED={SEED} TENANT_CHAOS_SCALE={SCALE})", flush=True)
    started = time.monotonic()

    fleet = Fleet(stack)
    await fleet.start_all()
    conn = await stack.connect()  # after start-up: the workers made the control schema
    try:
        await create_legacy(conn, legacy, version)
    finally:
        await conn.close()
    settings = stack.settings()
    fault_task: asyncio.Task[None] | None = None
    restore_tasks: list[asyncio.Task[None]] = []
    try:
        async with InputPublisher(settings) as pub, EventsTail(settings) as tail:
            fault_task = asyncio.create_task(
                fleet.faults_loop(random.Random(SEED + 1), time.monotonic() + FAULTS_S))
            restore_tasks = [asyncio.create_task(er.drive_restore(
                c, stack.dsn, pub, tail, SETTLE_S, fleet.kill_backup_workers))
                for c in plan.restores]
            await publish_paced(plan, pub, tail, fleet)
            await asyncio.gather(*restore_tasks)
            fleet.note(f"restore cases done ({len(restore_tasks)})")
            await fault_task
            fault_task = None
            await fleet.restarts_done()
            fleet.note("faults over")
            originals = plan.originals
            await tail.wait_for({p.env.id for p in originals}, SETTLE_S, "results")
            fleet.note("every input event has a result")
            dlq = await read_topic(settings, topics.DLQ)
            by_cause = dict(tail.by_cause)
    finally:
        for task in [t for t in (fault_task, *restore_tasks) if t is not None and not t.done()]:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        stack.target_up()

    problems: list[str] = []
    conn = await stack.connect()
    try:
        problems += await er.check_nothing_stuck(conn, settings, plan.tenants, 60.0)
        fleet.note("nothing stuck checked (parked events, group lag)")
        problems += await check_effects(conn, plan, by_cause)
        problems += await check_state(conn, plan, version)
        problems += await check_migrated(conn, plan, legacy)
        problems += await check_orphans(conn)
        problems += await er.orphan_replaced_schemas(conn)
        erases = [(p.tenant, p.env) for p in plan.originals if p.kind == "erase"]
        repeats = [(p.tenant, p.env) for p in plan.events if p.kind == "reerase"]
        archive_problems, archives = await er.check_archives(
            conn, erases, repeats, by_cause, stack.state / "age" / "operator.key")
        problems += archive_problems
        restore_problems, restores_ok, raced = await er.check_restores(
            conn, plan.restores, by_cause)
        problems += restore_problems
        restored, catalog_n = await check_catalog(conn, stack, plan, by_cause, rng, problems)
    finally:
        await conn.close()
    our_ids = {p.env.id for p in plan.events + plan.driven}
    problems += [f"dead letter of our event {json.loads(r.value).get('id')}: {dict(r.headers)}"
                 for r in dlq if _event_id(r.value) in our_ids]

    stats = log_stats(chaos_log_dir, our_ids)
    problems += [f"restore job {k[6:]} logged {n} swaps" for k, n in stats.items()
                 if k.startswith("swaps:") and n > 1]
    sent_at: dict[str, float] = {}
    for sent in pub.sent:
        sent_at.setdefault(sent.envelope.id, sent.at)
    latency = max(min(s.timestamp_ms for s in by_cause[p.env.id]) / 1000 - sent_at[p.env.id]
                  for p in plan.originals)
    kinds = Counter(p.kind for p in plan.events)
    kinds.update(p.kind for p in plan.driven)
    records = len(plan.events) + sum(len(c.sent) for c in plan.restores)
    rows = [
        ("seed / scale", f"{SEED} / {SCALE}"), ("tenants", n_tenants),
        ("events published (records)", records),
        ("  by kind", ", ".join(f"{k}={v}" for k, v in sorted(kinds.items()))),
        ("faults", ", ".join(f"{k}={v}" for k, v in sorted(fleet.faults.items()))),
        ("retries (in-delivery + job)", stats["retries"]),
        ("circuit-breaker waits", stats["circuit_waits"]),
        ("redeliveries (deliveries - records)", max(0, stats["deliveries"] - records)),
        ("duplicates suppressed (inbox)", stats["duplicates_suppressed"]),
        ("publish retries (test producer)", pub.publish_retries),
        ("results on tenants.events", len(tail.seen)),
        ("catalogued backups / restored", f"{catalog_n} / {restored}"),
        ("erase archives checked (operator key)", archives),
        ("restores swapped once, rows = manifest",
         f"{restores_ok} of {len(plan.restores) - len(raced)}"),
        ("restores raced by an erasure: answers", ", ".join(raced) or "-"),
        ("restores resumed after a swap (logs)", stats["restores_resumed"]),
        ("max end-to-end latency", f"{latency:.1f}s"),
        ("wall time", f"{time.monotonic() - started:.0f}s"),
    ]
    print("\n".join(["", "chaos run summary", "-" * 60]
                    + [f"{k:<38} {v}" for k, v in rows] + ["-" * 60]))
    print("timeline:\n" + "\n".join(fleet.timeline))
    assert not problems, f"{len(problems)} problems (seed {SEED}):\n" + "\n".join(problems[:40])
    assert sum(fleet.faults.values()) >= 4 and fleet.faults["kafka_restart"] == 1
    assert fleet.faults["postgres_restart"] == 1 and fleet.faults["target_outage"] == 1


def _event_id(value: bytes | None) -> str:
    try:
        return str(json.loads(value or b"").get("id", ""))
    except (ValueError, AttributeError):
        return ""


async def check_effects(conn: asyncpg.Connection, plan: Plan, by_cause: dict) -> list[str]:
    problems = []
    inbox = {(r["consumer_group"], r["event_id"]): r["n"] for r in await conn.fetch(
        f"SELECT consumer_group, event_id, count(*) AS n FROM {ns.CONTROL}.inbox"
        " WHERE event_id = ANY($1::text[]) GROUP BY 1, 2",
        [p.env.id for p in plan.originals])}
    for p in plan.originals:
        group = BACKUP_GROUP if p.kind in ("backup", "restore") else LIFECYCLE_GROUP
        if inbox.get((group, p.env.id)) != 1:
            problems.append(f"{p.kind} {p.env.id} ({p.tenant}): inbox rows {inbox.get((group, p.env.id), 0)}")
        seen = by_cause.get(p.env.id, [])
        answers = {(s.envelope.type, s.envelope.id) for s in seen}
        if len(answers) != 1:
            problems.append(f"{p.kind} {p.env.id} ({p.tenant}): results {sorted(answers)}")
        elif (t := next(iter(answers))[0]) not in expected_types(p, plan):
            detail = seen[0].envelope.data
            problems.append(f"{p.kind} {p.env.id} ({p.tenant}): got {t} {detail}")
    return problems


async def check_state(conn: asyncpg.Connection, plan: Plan, version: int) -> list[str]:
    rows = {r["tenant_id"]: r for r in await conn.fetch(
        "SELECT t.*, EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        "  JOIN pg_roles a ON a.oid = m.member WHERE r.rolname = t.role_name"
        "  AND a.rolname = $2) AS app_member"
        f" FROM {ns.CONTROL}.tenants t WHERE tenant_id = ANY($1::text[])", plan.tenants,
        ns.names().app_role)}
    problems = []
    for t in plan.tenants:
        row, want = rows.get(t), plan.final[t]
        if row is None:
            problems.append(f"{t}: no registry row (want {want})")
            continue
        if row["status"] != want:
            problems.append(f"{t}: status {row['status']}, want {want}")
        if want != "erased" and (row["plan"], row["schema_version"]) != ("free", version):
            problems.append(f"{t}: plan/version {row['plan']}/{row['schema_version']}")
        if want != "erased" and row["app_member"] != (want == "active"):
            problems.append(f"{t}: tenant_app member={row['app_member']} but status {want}")
    return problems


async def check_orphans(conn: asyncpg.Connection) -> list[str]:
    live = {r["tenant_id"] for r in await conn.fetch(
        f"SELECT tenant_id FROM {ns.CONTROL}.tenants WHERE status <> 'erased'")}
    want = {ns.tenant(t) for t in live}
    like = ns.names().tenant_prefix.replace("_", "\\_") + "%"  # the session's namespace
    schemas = {r[0] for r in await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", like)} - {ns.CONTROL}
    # the service's own roles share the prefix: the app role, the API's reader, the restore login
    n = ns.names()
    service_roles = {n.app_role, ns.CONTROL, n.api_reader_role, n.restore_role}
    roles = {r[0] for r in await conn.fetch(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", like)} - service_roles
    want_roles = {ns.tenant(t) for t in live}
    problems = [f"orphan schema {s}" for s in sorted(schemas - want)]
    problems += [f"live tenant without schema {s}" for s in sorted(want - schemas)]
    problems += [f"orphan role {r}" for r in sorted(roles - want_roles)]
    problems += [f"live tenant without role {r}" for r in sorted(want_roles - roles)]
    return problems


async def check_catalog(conn: asyncpg.Connection, stack: PrivateStack, plan: Plan, by_cause: dict,
                        rng: random.Random, problems: list[str]) -> tuple[int, int]:
    import hashlib

    catalog = list(await conn.fetch(
        f"SELECT * FROM {ns.CONTROL}.backups WHERE tenant_id = ANY($1::text[])", plan.tenants))
    by_id = {r["backup_id"]: r for r in catalog}
    # an erase's archive is kept (encrypted to the operators: checked by er.check_archives)
    archives = {a for p in plan.originals if p.kind in ("erase", "reerase")
                if (e := er.erase_answer(by_cause, p.env.id)) is not None
                and (a := e.data.get("archive_backup_id"))}
    for r in catalog:
        if r["tenant_id"] in plan.erased and r["backup_id"] not in archives:
            problems.append(f"catalog row {r['backup_id']} of erased tenant {r['tenant_id']}")
        path = local_path(r["uri"])
        if not path.is_file():
            problems.append(f"catalogued artifact missing: {path}")
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != r["sha256"] or path.stat().st_size != r["bytes"]:
            problems.append(f"catalogued artifact {path} differs from its catalog row")
    keys = {r[0] for r in await conn.fetch(
        f"SELECT tenant_id FROM {ns.CONTROL}.tenant_keys WHERE tenant_id = ANY($1::text[])",
        sorted(plan.erased))}
    problems += [f"erased tenant {t} still has a backup key" for t in sorted(keys)]
    # every BackupCompleted of a live tenant is catalogued, unless retention expired it: then
    # the tenant's plan keeps `last` newer backups (the newest is never expired)
    plans = dict(await conn.fetch(f"SELECT tenant_id, plan FROM {ns.CONTROL}.tenants"
                                  " WHERE tenant_id = ANY($1::text[])", plan.tenants))
    retention = Settings.model_fields["backup_retention"].default  # the chaos workers' (unset)
    for p in plan.originals:
        for s in by_cause.get(p.env.id, []):
            if (s.envelope.type == "BackupCompleted" and p.tenant not in plan.erased
                    and s.envelope.data["backup_id"] not in by_id):
                newer = [r for r in catalog if r["tenant_id"] == p.tenant
                         and r["finished_at"] > s.envelope.time]
                if len(newer) < retention[plans.get(p.tenant, "free")][0]:
                    problems.append(f"BackupCompleted {s.envelope.data['backup_id']} not"
                                    f" catalogued ({len(newer)} newer backups catalogued)")
    # a SIGKILLed upload leaves a partial; the job's next attempt (every job ended) removes it
    leftovers = [str(f) for f in stack.backup_dir.rglob("*") if f.name.endswith(".partial")]
    problems += [f"partial upload left behind: {f}" for f in leftovers]
    # decrypt + restore: every catalogued backup, or a seeded sample
    catalog = [r for r in catalog if r["backup_id"] not in archives]
    sample = catalog if len(catalog) <= RESTORE_SAMPLE else rng.sample(catalog, RESTORE_SAMPLE)
    key_dir = stack.state / "chaos-keys"
    key_dir.mkdir(exist_ok=True)
    restored = 0
    for r in sample:
        wrapped = await conn.fetchval(
            f"SELECT wrapped_identity FROM {ns.CONTROL}.tenant_keys WHERE tenant_id = $1",
            r["tenant_id"])
        if wrapped is None:
            problems.append(f"no key for catalogued backup {r['backup_id']}")
            continue
        identity = write_identity(key_dir, unwrap(bytes(wrapped), stack.master_key))
        listing = stock_restore_list(local_path(r["uri"]), identity)
        if listing.returncode != 0 or "TABLE" not in listing.stdout:
            problems.append(f"backup {r['backup_id']} does not restore: {listing.stderr[-300:]}")
        else:
            restored += 1
    return restored, len(catalog)
