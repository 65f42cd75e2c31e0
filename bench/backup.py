"""Backup: a ~S MB tenant schema through the service's path vs the shell pipeline.

ours: adapters.dump_pipeline.dump (pg_dump | zstd -T<cores> | age, streamed through Python to a
LocalFolderTarget) in its own process; its peak RSS and its children's are sampled from /proc.
baseline: ``pg_dump --format=custom --compress=0 | zstd -3 | age -r R > file`` from bash.
context: ``pg_dump`` alone to /dev/null (the rate a backup could approach).
MB/s is the schema's size on disk divided by the wall time.
"""

import asyncio
import json
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from adapters.age_keys import generate_identity
from adapters.dump_pipeline import libpq_env
from bench import common, peak_rss, tenant_data, tenants
from bench.common import Row


@dataclass
class Fixture:
    tenant_id: str
    megabytes: float
    identity: str
    recipient: str
    folder: Path

    @property
    def schema(self) -> str:
        return common.schema(self.tenant_id)

    @property
    def artifact(self) -> Path:
        return self.folder / "ours" / "bench" / "artifact.age"


async def fixture(size_mb: int) -> Fixture:
    settings = common.settings()
    await tenants.ensure_control(settings)
    tid, mb = await tenant_data.make(settings, size_mb)
    identity, recipient = await generate_identity()
    folder = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    return Fixture(tid, mb, identity, recipient, folder)


async def dispose(fx: Fixture) -> None:
    await common.drop_tenants_now([fx.tenant_id])
    for path in sorted(fx.folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    fx.folder.rmdir()


@dataclass(frozen=True)
class DumpRun:
    """One run of the service's path: what bench.dump_worker reported, and peak MB by process
    ('self' is the worker, each child by its name)."""

    artifact_bytes: int
    seconds: float
    peaks: dict[str, float]


async def measure_once(fx: Fixture) -> DumpRun:
    """One run of the service's path in its own process."""
    fx.artifact.unlink(missing_ok=True)
    out, peaks = await peak_rss.run(
        [sys.executable, "-m", "bench.dump_worker", fx.schema, fx.recipient,
         str(fx.folder / "ours")])
    reported = json.loads(out)
    return DumpRun(int(reported["bytes"]), float(reported["seconds"]), peaks)


async def _shell(command: str) -> tuple[float, dict[str, float]]:
    env = libpq_env(common.dsn())
    url = env["PGDATABASE"]  # the rest of the connection is in env, never argv
    clock = common.Clock()
    _, peaks = await peak_rss.run(["bash", "-o", "pipefail", "-c", command.replace("URL", url)],
                                  env)
    return clock.elapsed, peaks


async def measure(fx: Fixture) -> list[Row]:
    ours, shell, alone, rss = [], [], [], []
    children: dict[str, list[float]] = {}
    q_schema = shlex.quote(f'--schema="{fx.schema}"')
    for rep in range(common.REPS):
        stats = await measure_once(fx)
        ours.append(fx.megabytes / stats.seconds)
        rss.append(stats.peaks["self"])
        for name, mb in stats.peaks.items():
            if name != "self":
                children.setdefault(name, []).append(mb)
        seconds, shell_peaks = await _shell(
            f"pg_dump --format=custom --compress=0 {q_schema} -d URL | zstd -q -3 |"
            f" age -r {fx.recipient} > {fx.folder}/shell.age")
        shell.append(fx.megabytes / seconds)
        seconds, _ = await _shell(
            f"pg_dump --format=custom --compress=0 {q_schema} -d URL > /dev/null")
        alone.append(fx.megabytes / seconds)
        print(f"  rep {rep}: ours {ours[-1]:.1f} MB/s (worker RSS {rss[-1]:.0f} MB),"
              f" shell {shell[-1]:.1f} MB/s, pg_dump alone {alone[-1]:.1f} MB/s", flush=True)
    artifact_mb = stats.artifact_bytes / 1e6
    kids = ", ".join(f"{n} {max(v):.0f} MB" for n, v in sorted(children.items()))
    size = f"{fx.megabytes:.0f} MB schema"
    return [
        Row("backup", size, "MB/s", ours, shell, "shell pg_dump|zstd -3|age",
            goal="≥ 1.0 × shell", met=statistics.median(ours) >= statistics.median(shell),
            notes=f"artifact {artifact_mb:.1f} MB; pg_dump alone"
                  f" {statistics.median(alone):.1f} MB/s (median)"),
        Row("backup worker peak RSS", size, "MB", rss, [], higher_is_better=False,
            goal="≤ 100 MB", met=max(rss) <= 100,
            notes=f"python process running dump(); children peak: {kids}"),
    ]


async def run(size: int) -> list[Row]:
    fx = await fixture(size)
    try:
        return await measure(fx)
    finally:
        await dispose(fx)


if __name__ == "__main__":
    common.save("backup", asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 300)))
