"""The benchmark's own arithmetic: profile folding, CPU accounting, floor ratios (no stack)."""

import os

from bench import cpu, floor, floor_paired
from bench.profile import summarise

_CLI, _RUN = "<module> (tenantctl/cli.py:3)", "run (asyncio/runners.py:10)"
FOLDED = "\n".join([
    f"{_CLI};{_RUN};handle (service/provisioning.py:40);"
    "fetchval (asyncpg/connection.py:1) 6",
    f"{_CLI};{_RUN};handle (service/provisioning.py:41) 3",
    f"{_CLI};{_RUN};loads (json/__init__.py:9) 1",
    "not a stack line",
])


def test_folded_stacks_give_own_inclusive_and_library_shares() -> None:
    total, own, inclusive, libraries = summarise(FOLDED)
    assert total == 10
    # own time is per function: the two lines of handle() add up
    assert own["handle (service/provisioning.py)"] == 3
    assert own["fetchval (asyncpg/connection.py)"] == 6
    assert inclusive["handle (service/provisioning.py)"] == 9
    assert inclusive["run (asyncio/runners.py)"] == 10
    assert libraries == {"asyncpg": 6, "ours: service": 3, "json": 1}


def test_cpu_of_this_process_grows_while_it_works() -> None:
    meter = cpu.CpuMeter({"me": [os.getpid()]})
    with meter:
        sum(i * i for i in range(2_000_000))
    assert meter.seconds["me"] > 0
    assert set(meter.seconds) == {"me", "bench"}


def test_cpu_split_is_ms_per_event_largest_first() -> None:
    assert cpu.split({"kafka": 0.5, "worker": 2.0}, 1000) == "worker 2.00, kafka 0.50 ms CPU/event"


def test_floor_rows_compare_ours_with_each_floor_of_the_same_run() -> None:
    figures = {m: [100.0, 100.0, 100.0] for m in floor.MODES} | {"per batch": [1000.0] * 3}
    rows = floor.rows(500, figures, [300.0, 250.0, 260.0], "1000/s offered")
    assert [r.benchmark for r in rows[:5]] == ["consumer floor"] * 5
    batch = rows[-1]
    assert batch.baseline_name == "floor: per batch"
    assert batch.ratio == 0.26 and batch.met is True
    assert rows[5].ratio == 2.6 and rows[5].met is None  # per record: no goal set


def test_paired_row_reads_its_goal_on_the_median_of_the_pairs_ratios() -> None:
    # Medians of each side alone would give 300 / 1000 = 0.30; the pairs say 0.24 (each burst
    # against the floor passes around it), and the goal is read on them.
    ours = [300.0, 240.0, 480.0]
    floors = [1000.0, 1000.0, 2000.0]
    row = floor_paired.row(10_000, ours, floors)
    assert row.met is False and row.ours == [0.3, 0.24, 0.24] and row.ratio is None
    assert "per-pair ratios 0.30, 0.24, 0.24, median 0.24" in row.notes
    assert floor_paired.row(10_000, [260.0, 250.0], [1000.0, 1000.0]).met is True
