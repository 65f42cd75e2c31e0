"""A shutdown step that overruns is abandoned and named, so SIGTERM always ends the worker."""

import asyncio

import pytest
import structlog

from runtime.worker import _bounded


async def _ignores_cancellation(release: asyncio.Event) -> None:
    while not release.is_set():
        try:
            await release.wait()
        except asyncio.CancelledError:
            continue  # a step stuck on a dead peer: cancellation does not end it


async def test_an_overrunning_step_is_abandoned_and_logged_with_what_is_stuck() -> None:
    release = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        finished = await asyncio.wait_for(
            _bounded("stuck step", _ignores_cancellation(release), 0.2), 5
        )
    assert finished is False  # the worker then exits without waiting for it
    release.set()  # let the abandoned task end so this test's loop closes cleanly

    [entry] = [e for e in logs if e["event"] == "shutdown_step_overran"]
    assert entry["step"] == "stuck step"
    stacks = [frame for frames in entry["tasks"].values() for frame in frames]
    assert any("_ignores_cancellation" in frame for frame in stacks), entry["tasks"]


async def test_a_step_that_finishes_is_silent_and_its_error_propagates() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async def works() -> None:
        await asyncio.sleep(0)

    with structlog.testing.capture_logs() as logs:
        assert await _bounded("quick", works(), 5) is True
        with pytest.raises(ValueError, match="boom"):
            await _bounded("failing", fails(), 5)
    assert not logs
