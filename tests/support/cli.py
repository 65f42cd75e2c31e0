"""Run the real ``tenantctl`` in a subprocess, as an operator or a script would."""

import asyncio
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.workers import REPO_ROOT

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as one JSON document: it must hold nothing else."""
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


async def tenantctl(
    *args: str,
    cwd: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
    limit_s: float = 180.0,
) -> Ran:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tenantctl.cli", *args, cwd=cwd,
        env=dict(env) if env is not None else os.environ.copy(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"tenantctl {' '.join(args)} did not finish in {limit_s}s") from None
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def one_line_error(ran: Ran) -> str:
    """The single stderr line of a failed command (no traceback), asserted as such."""
    lines = [line for line in ran.err.splitlines() if line.strip()]
    assert "Traceback" not in ran.err, str(ran)
    assert len(lines) == 1, str(ran)
    return lines[0]


def times_in(value: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every (key, value) whose key names a time (``*_at``, ``time``, ``window_start``...)."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend(times_in(v, k))
    elif isinstance(value, list):
        for v in value:
            found.extend(times_in(v, key))
    elif key == "time" or key.endswith(("_at", "_start", "_vacuum", "_analyze")):
        found.append((key, value))
    return found
