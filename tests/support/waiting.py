"""Wait on state, never on time: poll a predicate until it holds or the deadline passes."""

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[T | None]],
    limit_s: float,
    *,
    what: str = ...,
    interval: float = ...,
) -> T: ...
@overload
async def wait_until(
    predicate: Callable[[], T | None], limit_s: float, *, what: str = ..., interval: float = ...
) -> T: ...
async def wait_until(
    predicate: Callable[[], Any], limit_s: float, *, what: str = "condition", interval: float = 0.05
) -> Any:
    """Return the first truthy value of ``predicate`` (sync or async); fail after ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {limit_s:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
