"""Peak RSS (VmHWM) of a process and, by name, of its children, sampled from /proc."""

import asyncio
import os
import subprocess
from collections.abc import Sequence


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {}


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _hwm_mb(status: dict[str, str]) -> float:
    return int(status.get("VmHWM", "0 kB").split()[0]) / 1024


async def run(args: Sequence[str], env: dict[str, str] | None = None, interval: float = 0.02
              ) -> tuple[bytes, dict[str, float]]:
    """Run ``args``; return (stdout, peak MB by process name: 'self' and each child's name)."""
    # Popen returns at once; the loop below polls /proc for peak RSS while the child runs.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, env={**os.environ, **(env or {})})  # noqa: ASYNC220
    peaks: dict[str, float] = {}
    while proc.poll() is None:
        for pid, name in [(proc.pid, "self"), *((c, "") for c in _children(proc.pid))]:
            st = _status(pid)
            key = name or st.get("Name", "?").strip()
            peaks[key] = max(peaks.get(key, 0.0), _hwm_mb(st))
        await asyncio.sleep(interval)
    out = proc.stdout.read() if proc.stdout else b""
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:3]} exited {proc.returncode}")
    return out, peaks
