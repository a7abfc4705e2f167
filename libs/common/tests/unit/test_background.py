"""Background tasks stop when told to, even when woken at that very moment."""

from __future__ import annotations

import asyncio

import pytest

from tillsammans_common.background import cancel_and_wait, wait_for_wake


def test_a_cancel_that_arrives_as_the_task_is_woken_still_stops_it() -> None:
    async def scenario() -> None:
        woken = asyncio.Event()
        task = asyncio.ensure_future(wait_for_wake(woken, 10.0))
        await asyncio.sleep(0)  # the task now waits
        woken.set()  # a commit wakes the relay ...
        task.cancel()  # ... as the service stops
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_the_wait_ends_at_the_wake_or_the_timeout() -> None:
    async def scenario() -> None:
        woken = asyncio.Event()
        woken.set()
        await asyncio.wait_for(wait_for_wake(woken, 10.0), timeout=5)  # returns at once: woken
        await asyncio.wait_for(wait_for_wake(asyncio.Event(), 0.01), timeout=5)  # returns: timed out
        await asyncio.wait_for(wait_for_wake(asyncio.Event(), -1.0), timeout=5)  # a past deadline is now

    asyncio.run(scenario())


def test_cancel_and_wait_stops_a_waiting_loop() -> None:
    async def scenario() -> None:
        woken = asyncio.Event()

        async def loop() -> None:
            while True:
                await wait_for_wake(woken, 0.01)

        task = asyncio.ensure_future(loop())
        await asyncio.sleep(0.02)
        await asyncio.wait_for(cancel_and_wait(task), timeout=5)
        assert task.cancelled()

    asyncio.run(scenario())


def test_cancel_and_wait_stops_a_task_that_swallowed_its_first_cancel() -> None:
    # What asyncio.wait_for does on Python 3.11 when the awaited result and the cancel arrive together
    # (nats-py awaits every publish acknowledgement so): the task runs on as if never cancelled.
    async def scenario() -> None:
        swallowed = asyncio.Event()

        async def loop() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed.set()
            while True:
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(loop())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task), timeout=5)
        assert swallowed.is_set() and task.cancelled()

    asyncio.run(scenario())
