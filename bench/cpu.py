"""CPU seconds per process group (workers, PostgreSQL, Kafka, Redis, the bench itself), from /proc.

Where the CPU of a measurement went on this 2-core machine: ``CpuMeter`` reads utime + stime of
each group's root processes and all their live descendants, plus what those roots have reaped
(cutime + cstime: PostgreSQL's backends that ended meanwhile are counted by the postmaster).
The stack's processes are found the way scripts/stack records them (``$TENANT_STACK_STATE/started``).
"""

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, own CPU s, reaped children's CPU s) of ``pid``; None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    own = (int(fields[11]) + int(fields[12])) / _TICK
    reaped = (int(fields[13]) + int(fields[14])) / _TICK
    return int(fields[1]), own, reaped


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            tree.setdefault(st[0], []).append(int(entry))
    return tree


def own_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` alone (the bench client: its children are the workers)."""
    st = _stat(pid)
    return st[1] if st else 0.0


def tree_seconds(roots: Iterable[int], tree: Mapping[int, list[int]] | None = None) -> float:
    """CPU seconds of ``roots`` and every live descendant, plus what the roots reaped."""
    tree = _children() if tree is None else tree
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or (st := _stat(pid)) is None:
            continue
        seen.add(pid)
        # a process that ends meanwhile moves from its own time to its parent's reaped time
        total += st[1] + st[2]
        todo += tree.get(pid, [])
    return total


def stack_pids() -> dict[str, int]:
    """The local stack's PostgreSQL (postmaster), Kafka and Redis pids, when this run started them."""
    state = Path(os.environ.get("TENANT_STACK_STATE")
                 or Path.home() / ".cache" / "tenant-service" / "state")
    started = state / "started"
    out: dict[str, int] = {}
    for name in ("kafka", "redis"):
        try:
            out[name] = int((started / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    try:
        data = Path((started / "postgres").read_text().strip())
        out["postgres"] = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def with_stack(groups: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """``groups`` (our processes), plus one group per process of the local stack."""
    return {**groups, **{name: [pid] for name, pid in stack_pids().items()}}


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process, every user), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK


class CpuMeter:
    """``with CpuMeter({"worker": [pid], ...}) as m: ...`` (or ``m.start()`` … ``m.stop()``)
    then ``m.seconds`` per group, ``m.machine`` (everyone's CPU s) and ``m.wall`` (s).

    Each group is its pids' process trees; the group ``bench`` is this process alone.
    """

    def __init__(self, groups: Mapping[str, Iterable[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.groups["bench"] = [os.getpid()]
        self.seconds: dict[str, float] = {}
        self._start: dict[str, float] = {}
        self.machine, self._machine = 0.0, 0.0
        self.wall, self._wall = 0.0, 0.0

    def _now(self) -> dict[str, float]:
        tree = _children()
        return {name: own_seconds(pids[0]) if name == "bench" else tree_seconds(pids, tree)
                for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start, self._machine, self._wall = self._now(), machine_busy(), time.perf_counter()

    def stop(self) -> None:
        end = self._now()
        self.seconds = {k: max(0.0, end[k] - self._start[k]) for k in self.groups}
        self.machine = machine_busy() - self._machine  # ours and everyone else's
        self.wall = time.perf_counter() - self._wall

    def __enter__(self) -> "CpuMeter":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def split(seconds: Mapping[str, float], events: int) -> str:
    """``worker 3.1 ms/event, postgres 1.2, …`` (ms of CPU per event), largest first."""
    parts = sorted(seconds.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {1000 * v / max(events, 1):.2f}" for k, v in parts) + " ms CPU/event"
