"""The Kafka UI that runs here: kaskade (the ``ui`` extra), a terminal UI, started against the
local stack under tmux; its captured screen lists our topics.

The extra is heavy (grpcio, boto3, textual), so it is installed on demand for this test only,
with the pins of constraints.txt. tmux is installed by scripts/stack (on CI too): without it this
test fails, it does not skip."""

import asyncio
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.settings import Settings
from tests.support.stack import SessionWorker
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack
KASKADE = Path(sys.executable).parent / "kaskade"
INSTALL_S = 900
SCREEN_S = 60.0


def _ui_requirements() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return list(project["project"]["optional-dependencies"]["ui"])


@pytest.fixture(scope="module")
def kaskade() -> Path:
    if not KASKADE.exists():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-c",
                str(REPO_ROOT / "constraints.txt"),
                *_ui_requirements(),
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_S,
            check=False,
        )
        assert done.returncode == 0, f"installing the ui extra failed:\n{done.stderr[-3000:]}"
    assert KASKADE.exists(), f"the ui extra installed no {KASKADE}"
    return KASKADE


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    """tmux on a private socket, so the test never sees or touches anyone else's sessions."""
    binary = shutil.which("tmux")
    assert binary, "tmux is not installed (scripts/stack up installs it): cannot test the Kafka UI"
    argv = [binary, "-L", f"tenant-ui-{uuid.uuid4().hex[:8]}"]
    yield argv
    subprocess.run([*argv, "kill-server"], capture_output=True, timeout=30, check=False)


async def _run(*argv: str) -> tuple[int, str]:
    # The test process has COLUMNS=80 and LINES=24 in its environment; textual would size
    # itself by them instead of by the tmux window (the tmux server inherits our environment).
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_kaskade_shows_our_topics(
    kaskade: Path,
    tmux: list[str],
    session_worker: SessionWorker,
    settings: Settings,
    log_dir: Path,
) -> None:
    command = f"{kaskade} admin -b {settings.kafka_bootstrap} --refresh-interval 5"
    # remain-on-exit: if kaskade stops, its last screen (the error) stays to be captured.
    # default-size: a detached session is 80 columns, too narrow for our topic names.
    setup = ["set", "-g", "remain-on-exit", "on", ";", "set", "-g", "default-size", "200x40"]
    session = ["new-session", "-d", "-s", "ui", command]
    rc, out = await _run(*tmux, "start-server", ";", *setup, ";", *session)
    assert rc == 0, out

    async def screen() -> str:
        rc, text = await _run(*tmux, "capture-pane", "-p", "-t", "ui")
        assert rc == 0, f"tmux capture-pane failed: {text}"
        return text

    async def lists_our_topics() -> str | None:
        text = await screen()
        return text if all(topic in text for topic in settings.names.topics.all) else None

    try:
        captured = await wait_until(lists_our_topics, SCREEN_S, what="kaskade listing our topics")
    finally:
        (log_dir / "kaskade-screen.txt").write_text(await screen())
    assert "Kaskade" in captured and settings.kafka_bootstrap in captured
