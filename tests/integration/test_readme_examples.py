"""The README's kcat examples, run as written against the stack (in the session's namespace).

Each line of the block is run with the stack's bootstrap and the session's topic names put in;
consumers get ``-e`` so that they stop at the end instead of following. The garbage example must
land in the dead-letter topic with ``x-dlq-reason=invalid_json``, as the README says."""

import asyncio
import re
import shlex

import pytest

from adapters.kafka import dead_letters as dlq
from contracts import topics
from runtime.settings import Settings
from tests.support.kafka import TopicTail
from tests.support.stack import SessionWorker
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack
README = REPO_ROOT / "README.md"
MARKER = "With kcat (installed by `scripts/stack up`):"


def _kcat_block() -> list[str]:
    text = README.read_text()
    assert MARKER in text, f"README lost the kcat examples ({MARKER!r})"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block, "no bash block after the kcat marker"
    return block.group(1).splitlines()


def _localised(line: str, settings: Settings) -> str:
    line = line.replace("127.0.0.1:9092", settings.kafka_bootstrap)
    for logical in topics.ALL_TOPICS:
        line = re.sub(rf"(?<=-t ){re.escape(logical)}\b", settings.names.topics.topic(logical), line)
    return line


async def _run(command: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_shell(
        command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


def test_the_follow_examples_start_at_the_end() -> None:
    lines = _kcat_block()
    follows = [i for i, line in enumerate(lines) if line.startswith("#") and "follow" in line]
    assert follows, "no 'follow' example in the kcat block"
    for i in follows:
        assert "-o end" in lines[i + 1], f"a follow example replays history: {lines[i + 1]}"


async def test_the_kcat_examples_run_and_garbage_is_dead_lettered(
    session_worker: SessionWorker, settings: Settings
) -> None:
    commands = [_localised(line, settings) for line in _kcat_block()
                if line.strip() and not line.startswith("#")]
    assert commands, "the kcat block has no commands"
    async with TopicTail(settings, topics.DLQ) as dead_letters:
        for command in commands:
            argv = shlex.split(command.split("|")[-1])
            if "-C" in argv and "-e" not in argv:
                command += " -e"  # a consumer stops at the end of the topic here
            code, out = await _run(command)
            assert code == 0, f"{command}\n{out}"
        records = await wait_until(lambda: dead_letters.with_key(b"oops"), 60,
                                   what="the garbage example's dead letter")
    assert dict(records[0].headers)[dlq.REASON] == b"invalid_json"
    assert records[0].value == b"not json"
