"""Background tasks a service runs beside its API (the relay, the pruner): stopped the same way."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)
RECANCEL_SECONDS = 0.5


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has stopped (its current step finishes or is cut).

    The cancel is sent again while the task runs on: on Python 3.11 ``asyncio.wait_for`` (which
    nats-py uses for every request and JetStream publish) swallows a cancel that arrives as its
    awaited result does, and a task that lost its cancel would keep a stopping service from ever
    stopping.
    """
    if task is None:
        return
    task.cancel()
    while not task.done():
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
        if not task.done():
            log.warning("background task ran on after its cancel; cancelling it again",
                        extra={"task": task.get_name()})
            task.cancel()
    if not task.cancelled() and task.exception() is not None:
        log.warning("background task failed as it stopped",
                    extra={"task": task.get_name(), "error_type": type(task.exception()).__name__})


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
