"""Where a worker's CPU goes on the consumer path: py-spy on the broker round trip.

``bench/run profile RATE``: one ``provisioner relay`` worker, the no-op ``TenantRequested``
round trip of bench/broker_overhead.py offered at RATE events/s for BENCH_BROKER_SECONDS,
REPS rounds (``bench/run profile 0``: REPS bursts of BENCH_BROKER_BURST drained, as the burst
row measures them), with ``py-spy record --gil`` attached to the worker for the whole measured part and the
CPU of every process group read from /proc (bench/cpu.py). Writes
``results/consumer_profile.md``: CPU per event per group, the hottest frames by own time and by
inclusive time, and own time per library. The raw folded stacks go to ``results/logs/``.
"""

import asyncio
import os
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg

from bench import common, cpu, tenants
from bench.broker_overhead import TENANTS, _burst, _round, _seconds, burst_size
from bench.common import RESULTS, percentile
from bench.workers import LOGS, Workers

REPORT = RESULTS / "consumer_profile.md"
TOP = 20
# Own time per "library": the top-level package of a frame's file (py-spy shows paths relative
# to sys.path); ours are named after their package, the rest after the library.
OURS = ("adapters", "service", "consumers", "contracts", "domain", "runtime", "producers")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    return found


def _path(frame: str) -> str:
    """The file of ``name (path:line)``, relative to sys.path."""
    path = frame.partition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(common.REPO) + "/"):
        path = path.split(marker)[-1]
    return path


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``: time per function, not per line."""
    return f"{frame.partition(' (')[0]} ({_path(frame)})"


def _library(frame: str) -> str:
    top = _path(frame).split("/")[0].removesuffix(".py")
    return f"ours: {top}" if top in OURS else top


def summarise(folded: str) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """(samples, own samples per frame, inclusive samples per frame, own samples per library)
    of py-spy's raw output: one ``frame;frame;…;frame count`` line per distinct stack."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        raw = [f for f in stack.split(";") if " (" in f]  # leaves out "process …"/"thread …"
        if not raw:
            continue
        total += n
        libraries[_library(raw[-1])] += n
        frames = [_function(f) for f in raw]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return total, own, inclusive, libraries


def _table(title: str, counts: Counter[str], total: int, ms_per_sample: float,
           below: float = 1.0) -> list[str]:
    """The TOP frames; ``below`` leaves out those in more than that share of the samples (the
    event loop and the CLI around everything)."""
    lines = [f"### {title}", "", "| share | ms CPU per event | frame |", "|---|---|---|"]
    kept = [(f, n) for f, n in counts.most_common() if n <= below * total]
    for frame, n in kept[:TOP]:
        lines.append(f"| {100 * n / total:.1f}% | {n * ms_per_sample:.3f} | `{frame}` |")
    return [*lines, ""]


async def run(rate: int) -> None:
    settings = common.settings()
    await tenants.ensure_control(settings)
    ids = common.tenant_ids(TENANTS, "p")
    await tenants.create_parallel(settings, ids, tenants.latest_steps())
    LOGS.mkdir(parents=True, exist_ok=True)
    raw = LOGS / f"consumer-{time.strftime('%H%M%S')}.folded"
    achieved, latencies = [], []
    try:
        async with Workers(settings, 1) as workers:
            await _round(settings, ids, 20 / _seconds())  # warm-up
            (pid,) = workers.pids
            groups = cpu.with_stack({"worker": [pid]})
            argv = [py_spy(), "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                    "--gil", "--nonblocking", "--output", str(raw)]
            spy = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.DEVNULL)
            clock = common.Clock()
            with cpu.CpuMeter(groups) as meter:
                for _ in range(common.REPS):
                    if rate:
                        got, lat = await _round(settings, ids, rate)
                    else:  # the burst: no latencies, every event counts once
                        got, lat = await _burst(settings, ids, burst_size(), [pid]), []
                        latencies += [float("nan")] * burst_size()
                    achieved.append(got)
                    latencies += lat
            wall = clock.elapsed
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            await asyncio.wait_for(spy.wait(), 60)
    finally:
        conn = await asyncpg.connect(common.dsn())
        try:
            await common.drop_tenants(conn, ids)
        finally:
            await conn.close()
    events = len(latencies)
    total, own, inclusive, libraries = summarise(raw.read_text())
    worker_ms = 1000 * meter.seconds["worker"] / events
    ms_per_sample = worker_ms / max(total, 1)  # the samples share the worker's /proc CPU
    measured = (f"offered at {rate}/s × {_seconds():g} s, {common.REPS} rounds" if rate else
                f"{common.REPS} bursts of {burst_size()} drained (bench/broker_overhead.py)")
    timing = (f" latency p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s."
              if rate else "")
    lines = [
        f"# Consumer path profile ({time.strftime('%Y-%m-%d %H:%M')})", "",
        f"`bench/run profile {rate}`: one `provisioner relay` worker, no-op `TenantRequested`"
        f" round trip {measured}: {events}"
        f" events in {wall:.1f} s, achieved {min(achieved):.0f}–{max(achieved):.0f} events/s."
        f"{timing}"
        f" Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end.", "",
        "## CPU per event (from /proc, the whole measured part)", "",
        "| process | CPU s | ms CPU per event |", "|---|---|---|",
        *(f"| {k} | {v:.2f} | {1000 * v / events:.2f} |"
          for k, v in sorted(meter.seconds.items(), key=lambda kv: -kv[1])),
        f"| all | {sum(meter.seconds.values()):.2f} | "
        f"{1000 * sum(meter.seconds.values()) / events:.2f} |", "",
        f"CPU busy: ours {sum(meter.seconds.values()) / wall:.2f} of {os.cpu_count()} cores, the"
        f" machine (everyone's) {meter.machine / wall:.2f}.", "",
        f"## Worker: py-spy --gil, {total} samples at 100 Hz", "",
        "Samples are taken only while a thread holds the GIL (Python running; waits in epoll and"
        " in socket calls release it and are left out). Shares are of those samples; ms per event"
        " spreads the worker's /proc CPU (which also counts the kernel's socket work) over them.",
        "",
        "### Own time per library", "", "| share | ms CPU per event | library |", "|---|---|---|",
        *(f"| {100 * n / total:.1f}% | {n * ms_per_sample:.3f} | {lib} |"
          for lib, n in libraries.most_common()), "",
        *_table("Hottest frames, own time", own, total, ms_per_sample),
        *_table("Hottest frames, inclusive time (frames under 60% of the samples)", inclusive,
                total, ms_per_sample, below=0.6),
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT}; worker {worker_ms:.2f} ms CPU per event; raw stacks {raw}", flush=True)


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
