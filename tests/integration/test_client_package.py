"""The client distribution, as another team gets it: a wheel built from clients/python, installed
into a fresh venv without the service, and its sample consumer run against the real stack.

Also the publish helpers with real clients: aiokafka and confluent-kafka requests that the
service provisions."""

import asyncio
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from contracts import __version__
from contracts.events import TenantRequested
from contracts.publish import publish_aiokafka, publish_confluent
from runtime.settings import Settings
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import SessionWorker, TenantIds
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack
CLIENT_DIR = REPO_ROOT / "clients" / "python"
EXAMPLE = REPO_ROOT / "examples" / "tenant_provisioned_consumer.py"
INSTALL_S = 600
RESULT_S = 60.0

# Run inside the client venv: the package works and the service is not there.
CLIENT_CHECK = """
import importlib.resources, importlib.util, json, sys
import contracts
from contracts import codec, topics
from contracts.codec import DecodeLimits
from contracts.events import TenantProvisioned
from contracts.publish import record_for
assert "site-packages" in contracts.__file__, contracts.__file__
missing = [m for m in ("domain", "adapters", "runtime", "service", "consumers", "faststream")
           if importlib.util.find_spec(m) is None]
event = TenantProvisioned(tenant_id="acme", plan="pro", schema_name="tenant_acme",
                          role_name="tenant_acme_role", schema_version=3)
limits = DecodeLimits(max_bytes=65536, max_future_s=60, max_age_s=60)
modes = {}
for mode in ("structured", "binary"):
    r = record_for(event, source="urn:client-check", mode=mode)
    decoded = codec.decode(r.value, key=r.key, topic=r.topic, limits=limits, headers=r.headers)
    modes[mode] = decoded.event == event
schema = json.loads(importlib.resources.files("contracts").joinpath(
    "schemas/TenantProvisioned.json").read_text())
print(json.dumps({"version": contracts.__version__, "missing": missing, "modes": modes,
                  "schema_title": schema["title"]}))
"""


def _run(argv: list[str], timeout: float = INSTALL_S) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway venv holding only the wheel (and its aiokafka extra): no service."""
    work = tmp_path_factory.mktemp("client-package")
    # setuptools reuses build/ between builds: a module deleted from contracts/ would linger.
    shutil.rmtree(CLIENT_DIR / "build", ignore_errors=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(work / "dist"),
            str(CLIENT_DIR),
        ]
    )
    [wheel] = (work / "dist").glob("tenant_service_contracts-*.whl")
    _run([sys.executable, "-m", "venv", str(work / "venv")])
    python = work / "venv" / "bin" / "python"
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-c",
            str(REPO_ROOT / "constraints.txt"),
            f"{wheel}[aiokafka]",
        ]
    )
    yield python


def test_the_wheel_works_without_the_service(client_python: Path, tmp_path: Path) -> None:
    # -I: no script dir, cwd or PYTHONPATH on sys.path, so only the venv's packages are seen.
    out = _run([str(client_python), "-I", "-c", CLIENT_CHECK], timeout=120)
    report = json.loads(out)
    assert report["version"] == __version__
    assert report["missing"] == [
        "domain",
        "adapters",
        "runtime",
        "service",
        "consumers",
        "faststream",
    ]
    assert report["modes"] == {"structured": True, "binary": True}
    assert report["schema_title"] == "TenantProvisioned"


async def test_example_consumer_receives_tenant_provisioned(
    client_python: Path, session_worker: SessionWorker, settings: Settings, tenants: TenantIds
) -> None:
    """A tenant provisioned through the session worker; the example, in the client venv, prints
    the TenantProvisioned it consumed."""
    tenant_id = tenants.new()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        request = await publish_aiokafka(
            producer,
            TenantRequested(tenant_id=tenant_id, plan="free"),
            source="urn:example-test",
            namespace=settings.names.namespace,  # the session's deployment
        )
    finally:
        await producer.stop()
    proc = await asyncio.create_subprocess_exec(
        str(client_python),
        "-I",
        str(EXAMPLE),
        "--bootstrap",
        settings.kafka_bootstrap,
        "--group",
        f"example-{uuid.uuid4().hex[:8]}",
        "--tenant",
        tenant_id,
        "--count",
        "1",
        "--namespace",
        settings.names.namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RESULT_S * 2)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"the example consumer never got it:\n{err.decode()[-2000:]}"
        ) from None
    assert proc.returncode == 0, err.decode()[-2000:]
    [line] = out.decode().splitlines()
    received = json.loads(line)
    assert received["type"] == "TenantProvisioned"
    assert received["tenant_id"] == tenant_id
    assert received["schema_name"] == ns.tenant(tenant_id)
    assert received["causationid"] == request.id
    assert received["correlationid"] == request.id  # no correlationid given: its own id


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_confluent_helper_request_is_provisioned(
    mode: str,
    session_worker: SessionWorker,
    settings: Settings,
    tenants: TenantIds,
    results: ResultLog,
) -> None:
    tenant_id = tenants.new()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    request = await asyncio.to_thread(
        publish_confluent,
        producer,
        TenantRequested(tenant_id=tenant_id, plan="free"),
        source="urn:confluent-test",
        mode=mode,  # type: ignore[arg-type]
        namespace=settings.names.namespace,
    )
    result = await results.first(request.id, RESULT_S)
    assert result.type == "TenantProvisioned", result
    assert result.subject == tenant_id
    assert result.data["schema_name"] == ns.tenant(tenant_id)
