"""Background tasks a service runs beside its API (the relay, the pruner): stopped the same way."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has stopped (its current step finishes or is cut)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def wait_for_wake(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass, whichever is first; a cancel always goes through.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives as the event is
    set, so a stopping service's relay would sleep on forever. ``asyncio.timeout`` tells its own
    expiry from a cancel.
    """
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            await event.wait()
    except TimeoutError:
        pass
