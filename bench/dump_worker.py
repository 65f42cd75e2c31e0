"""``python -m bench.dump_worker SCHEMA RECIPIENT DIR``: the service's backup path, alone in a
process (so its peak RSS is its own): adapters.dump_pipeline.dump into a LocalFolderTarget
writer, with the service's settings for zstd and chunk size. Prints bytes and seconds as JSON."""

import asyncio
import json
import sys
import time
from pathlib import Path

import bench  # noqa: F401
from adapters.backup_targets.local import LocalFolderTarget
from adapters.dump_pipeline import dump
from bench.common import settings


async def main(schema: str, recipient: str, folder: str) -> None:
    s = settings()
    target = LocalFolderTarget(Path(folder))
    await target.start()
    writer = await target.open_writer("bench/artifact.age")
    start = time.perf_counter()
    stats = await dump(s.pg_dsn.get_secret_value(), schema, [recipient], writer.write,
                       zstd_level=s.backup_zstd_level, zstd_threads=s.backup_zstd_threads,
                       chunk_size=s.backup_chunk_bytes, rate_limit=s.backup_rate_limit_bytes)
    await writer.commit()
    print(json.dumps({"bytes": stats.bytes, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
