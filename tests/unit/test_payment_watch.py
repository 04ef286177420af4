"""WatchPayment's polling loop against a fake reader that implements the real port."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from services.common.errors import NotFound
from services.payment.domain.model import Payment
from services.payment.service.watch import watch_payment


def _payment(payment_id: uuid.UUID, version: int, done: bool = False) -> Payment:
    return Payment(payment_id, "co", "buyer", "USD", 100, (), done, version, datetime.now(UTC))


class FakeReader:
    """A payment that moves to the next scripted state each time its version is polled `every` times."""

    def __init__(self, states: list[Payment], every: int = 2) -> None:
        self.states = states
        self.every = every
        self.polls = 0
        self.loads = 0

    @property
    def current(self) -> Payment:
        return self.states[min(self.polls // self.every, len(self.states) - 1)]

    async def payment(self, payment_id: uuid.UUID) -> Payment | None:
        self.loads += 1
        return self.current if payment_id == self.current.payment_id else None

    async def version(self, payment_id: uuid.UUID) -> int | None:
        self.polls += 1
        return self.current.version if payment_id == self.current.payment_id else None


async def _collect(reader: FakeReader, payment_id: uuid.UUID, max_duration_s: float = 5.0) -> list[Payment]:
    stream = watch_payment(reader, payment_id, max_duration_s=max_duration_s, poll_interval_s=0.001)
    return [payment async for payment in stream]


async def test_it_yields_the_current_state_then_each_change_and_ends_when_done() -> None:
    payment_id = uuid.uuid4()
    states = [_payment(payment_id, 1), _payment(payment_id, 2), _payment(payment_id, 3, done=True)]
    reader = FakeReader(states)
    seen = await _collect(reader, payment_id)
    assert [p.version for p in seen] == [1, 2, 3]
    assert seen[-1].done
    # Unchanged polls read only the version, never the whole payment.
    assert reader.loads == 3


async def test_a_done_payment_is_yielded_once() -> None:
    payment_id = uuid.uuid4()
    assert [p.version for p in await _collect(FakeReader([_payment(payment_id, 7, done=True)]), payment_id)] == [7]


async def test_it_ends_after_the_maximum_duration_when_nothing_changes() -> None:
    payment_id = uuid.uuid4()
    started = asyncio.get_running_loop().time()
    seen = await _collect(FakeReader([_payment(payment_id, 1)]), payment_id, max_duration_s=0.05)
    assert [p.version for p in seen] == [1]
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_an_unknown_payment_is_not_found() -> None:
    reader = FakeReader([_payment(uuid.uuid4(), 1)])
    with pytest.raises(NotFound) as caught:
        await _collect(reader, uuid.uuid4())
    assert caught.value.reason == "PAYMENT_NOT_FOUND"
