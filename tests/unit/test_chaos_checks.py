"""The chaos run's erase and restore checks (tests/chaos/erase_restore.py) can fail: each is
fed, through a fake connection, the state a lost archive, a second swap or a wrong restore leaves."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from contracts import codec
from contracts.events import TenantEraseRequested
from tests.chaos import erase_restore as er


class FakeConn:
    """Answers the checks' queries from canned rows, chosen by a fragment of the SQL."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]], counts: dict[str, int]) -> None:
        self.rows, self.counts = rows, counts

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        return next((v for k, v in self.rows.items() if k in sql), [])

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows = self._rows(sql)
        return [[r["schema_name"]] if "SELECT schema_name" in sql else r for r in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = self._rows(sql)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> int:
        return next(v for k, v in self.counts.items() if f'."{k}"' in sql)


def _answer(kind: str, **data: Any) -> list[Any]:
    return [SimpleNamespace(envelope=SimpleNamespace(type=kind, data=data))]


def _erase(tenant: str, archive: bool) -> Any:
    return codec.envelope_for(TenantEraseRequested(tenant_id=tenant, archive=archive),
                              source="urn:test")


async def test_a_lost_archive_and_a_repeat_with_another_archive_id_are_problems(
    tmp_path: Path,
) -> None:
    first, again = _erase("acme", True), _erase("acme", True)
    by_cause = {first.id: _answer("TenantErased", archive_backup_id="arch-1"),
                again.id: _answer("TenantErased", archive_backup_id="arch-2")}
    problems, n = await er.check_archives(
        FakeConn({"backups": []}, {}), [("acme", first)], [("acme", again)], by_cause,  # type: ignore[arg-type]
        tmp_path / "operator.key")
    assert n == 1
    assert any("answered archive arch-2, the first erase arch-1" in p for p in problems)
    assert any("archive arch-1 of acme lost: no catalogue row" in p for p in problems)


async def test_an_archive_whose_artifact_changed_is_a_problem(tmp_path: Path) -> None:
    artifact = tmp_path / "a.dump.zst.age"
    artifact.write_bytes(b"changed")
    row = {"backup_id": "arch-1", "tenant_id": "acme", "uri": artifact.as_uri(),
           "sha256": hashlib.sha256(b"original").hexdigest()}
    env = _erase("acme", True)
    problems, _ = await er.check_archives(
        FakeConn({"backups": [row]}, {}), [("acme", env)], [],  # type: ignore[arg-type]
        {env.id: _answer("TenantErased", archive_backup_id="arch-1")}, tmp_path / "k")
    assert problems == ["archive arch-1 of acme: artifact differs from its row"]


async def test_an_erase_asked_to_archive_that_answers_none_is_a_problem(tmp_path: Path) -> None:
    env = _erase("acme", True)
    problems, n = await er.check_archives(
        FakeConn({}, {}), [("acme", env)], [],  # type: ignore[arg-type]
        {env.id: _answer("TenantErased", archive_backup_id=None)}, tmp_path / "k")
    assert n == 0 and problems == [f"erase {env.id} (acme) asked for an archive, answered none"]


def _restore_case(tmp_path: Path) -> tuple[er.RestoreCase, dict[str, Any], dict[str, list[Any]]]:
    case = er.RestoreCase("acme", "req", {"users": 2, "docs": 3}, 1, backup_id="b-1")
    case.restore = codec.envelope_for(TenantEraseRequested(tenant_id="acme"), source="urn:test")
    artifact = tmp_path / "b-1.dump.zst.age"
    (tmp_path / "b-1.manifest.json").write_text(json.dumps(
        {"schema": "tenant_acme", "row_counts": {"users": 2, "projects": 2, "documents": 6}}))
    rows: dict[str, list[Any]] = {
        "backup_jobs": [{"swapped_at": "t", "restored_backup_id": "b-1",
                         "replaced_schema": "replaced_1"}],
        "replaced_schemas": [{"schema_name": "replaced_1"}],
        "backups": [{"uri": artifact.as_uri()}],
    }
    by_cause = {case.restore.id: _answer("RestoreCompleted", backup_id="b-1")}
    return case, rows, by_cause


async def test_a_restore_that_brought_back_the_backups_rows_once_passes(tmp_path: Path) -> None:
    case, rows, by_cause = _restore_case(tmp_path)
    conn = FakeConn(rows, {"users": 2, "projects": 2, "documents": 6})
    assert await er.check_restores(conn, [case], by_cause) == ([], 1, [])  # type: ignore[arg-type]


async def test_a_second_swap_and_rows_unlike_the_manifest_are_problems(tmp_path: Path) -> None:
    case, rows, by_cause = _restore_case(tmp_path)
    rows["replaced_schemas"].append({"schema_name": "replaced_2"})
    conn = FakeConn(rows, {"users": 3, "projects": 2, "documents": 5})  # post-backup writes kept
    problems, done, _ = await er.check_restores(conn, [case], by_cause)  # type: ignore[arg-type]
    assert done == 0
    assert any("replaced schemas ['replaced_1', 'replaced_2']" in p for p in problems)
    assert any("rows {'users': 3" in p for p in problems)


class StuckConn:
    async def fetchval(self, sql: str, *args: Any) -> int:
        return 1  # one parked event of our tenants

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [{"consumer_group": "tenant-provisioner", "tenant_id": "acme", "event_id": "e1",
                 "attempts": 9, "last_error": "lock timeout"}]


async def test_a_parked_event_left_undone_and_a_group_lagging_are_problems(
    monkeypatch: Any,
) -> None:
    async def lag(settings: Any, group: str, topic: str) -> int:
        return 3 if group == "tenant-backup" else 0

    monkeypatch.setattr(er, "group_lag", lag)
    problems = await er.check_nothing_stuck(StuckConn(), None, ["acme"], 0.1)  # type: ignore[arg-type]
    assert len(problems) == 2
    assert problems[0].startswith("parked event left undone") and "e1" in problems[0]
    assert problems[1] == "group tenant-backup on tenants.backups: lag 3 after 0s"


async def test_a_restore_raced_by_an_erasure_that_failed_yet_swapped_is_a_problem(
    tmp_path: Path,
) -> None:
    case, rows, _ = _restore_case(tmp_path)
    case.erase = TenantEraseRequested(tenant_id="acme")
    assert case.restore is not None
    by_cause = {case.restore.id: _answer("RestoreFailed", reason="erasing")}
    conn = FakeConn(rows, {})
    conn.fetchval = _no_schema  # type: ignore[method-assign]
    problems, done, raced = await er.check_restores(conn, [case], by_cause)  # type: ignore[arg-type]
    assert (done, raced) == (0, ["RestoreFailed erasing"])
    assert problems == [
        "restore of acme failed ({'reason': 'erasing'}) but swapped",
        "erased tenant acme keeps replaced schemas ['replaced_1']",
    ]


async def _no_schema(sql: str, *args: Any) -> None:
    return None
