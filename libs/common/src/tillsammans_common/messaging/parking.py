"""Parked messages: retried when a consent arrives, dead-lettered after the parking timeout (decision 14).

A consumer registers, per durable, how to try a parked message again (``register``); the consent
replica wakes the service's ``Parking`` whenever it records a grant or withdrawal (``wake``), and a
sweep every ``parking_sweep_seconds`` also catches what a wake missed (e.g. a restart in between).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta

from faststream.nats import NatsBroker

from tillsammans_common.background import cancel_and_wait, wait_for_wake
from tillsammans_common.messaging import deadletters
from tillsammans_common.messaging.deadletters import PARKED_STREAM, Letter

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """What became of a parked message tried again."""

    APPLIED = "applied"
    WAITING = "waiting"
    DEAD_LETTERED = "dead_lettered"


# retry(letter) applies the parked message again; expire(letter) dead-letters it (both raise on infrastructure).
Retrier = Callable[[Letter], Awaitable[Outcome]]
Expirer = Callable[[Letter], Awaitable[None]]
_RETRIERS: weakref.WeakKeyDictionary[NatsBroker, dict[str, tuple[Retrier, Expirer]]] = weakref.WeakKeyDictionary()
_PARKINGS: weakref.WeakKeyDictionary[NatsBroker, Parking] = weakref.WeakKeyDictionary()


def register(broker: NatsBroker, durable: str, retry: Retrier, expire: Expirer) -> None:
    """How the consumer ``durable`` tries a parked message again and dead-letters it when its time is up."""
    _RETRIERS.setdefault(broker, {})[durable] = (retry, expire)


def wake(broker: NatsBroker) -> None:
    """Something a parked message may wait for has arrived: try the parked messages now."""
    parking = _PARKINGS.get(broker)
    if parking is not None:
        parking.wake()


class Parking:
    """The parked messages of one service: retried on a wake and every sweep, expired after the timeout."""

    def __init__(self, broker: NatsBroker, *, org: str, service: str, timeout_seconds: float,
                 sweep_seconds: float) -> None:
        self._broker = broker
        self._org = org
        self._service = service
        self._timeout = timedelta(seconds=timeout_seconds)
        self._sweep_seconds = sweep_seconds
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        _PARKINGS[broker] = self

    def wake(self) -> None:
        """Sweep at once (called on the event loop, after the arrival committed)."""
        self._woken.set()

    async def start(self) -> None:
        """Start sweeping in the background."""
        self._task = asyncio.create_task(self._run(), name=f"parking-{self._service}")

    async def stop(self) -> None:
        """Stop sweeping."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await wait_for_wake(self._woken, self._sweep_seconds)
            self._woken.clear()
            try:
                await self.sweep()
            except Exception as exc:  # the broker or database is down: the next sweep tries again
                log.warning("parked messages not swept", extra={"error_type": type(exc).__name__})

    async def sweep(self) -> int:
        """Try every parked message of this service once; how many left the parking."""
        js = self._broker.config.connection_state.stream
        retriers = _RETRIERS.get(self._broker, {})
        settled = 0
        for letter in await deadletters.read_all(js, PARKED_STREAM, self._org, self._service):
            handlers = retriers.get(letter.durable)
            if handlers is None:
                continue  # a consumer this version no longer has: left to the stream's age limit
            retry, expire = handlers
            try:
                outcome = await retry(letter)
                if outcome is Outcome.WAITING and deadletters.now() - letter.at >= self._timeout:
                    await expire(letter)
                    outcome = Outcome.DEAD_LETTERED
            except Exception as exc:
                log.warning("parked message kept for a later try",
                            extra={"consumer": letter.consumer, "error_type": type(exc).__name__})
                continue
            if outcome is not Outcome.WAITING:
                # Deleted only once its effect or its dead letter is durable.
                await deadletters.remove(js, PARKED_STREAM, letter.sequence)
                settled += 1
                log.info("parked message left the parking", extra={"consumer": letter.consumer,
                                                                     "outcome": outcome.value})
        return settled
