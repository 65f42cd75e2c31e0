"""The service layer sees ports and domain types only: no driver is imported under service/."""

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"
DRIVERS = ("asyncpg", "redis", "aiokafka", "asyncssh", "boto3", "botocore", "aiobotocore")
# Use cases not moved onto the ports yet: each still takes a driver's connection or client.
# The list may only shrink (a module that no longer imports a driver must leave it).
NOT_YET_ON_PORTS: set[str] = set()


def drivers_imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = (
            [a.name for a in node.names] if isinstance(node, ast.Import)
            else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        found |= {n for n in names if n.split(".")[0] in DRIVERS}
    return found


@pytest.mark.parametrize("path", sorted(SERVICE.glob("*.py")), ids=lambda p: p.name)
def test_a_service_module_imports_no_driver(path: Path) -> None:
    imported = drivers_imported(path)
    if path.name in NOT_YET_ON_PORTS:
        assert imported, f"{path.name} imports no driver now: take it off NOT_YET_ON_PORTS"
    else:
        assert imported == set(), f"{path.name} imports {sorted(imported)}"


def test_the_check_sees_a_driver_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import redis.asyncio as r\nfrom asyncpg import Pool\nimport json\n")
    assert drivers_imported(probe) == {"redis.asyncio", "asyncpg"}
