"""Delivery hands every transition to every sink in order; one failing sink neither
stops the others nor loses the next transitions; drain waits a bounded time."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine.core.evaluator import Transition
from engine.runtime.delivery import Delivery
from tests.unit.adapters.alerts.factories import firing


def transition(slo: str, state: str = "firing") -> Transition:
    return firing(slo=slo, state=state)


class Recording:
    def __init__(self, fail_on: str | None = None, gate: asyncio.Event | None = None) -> None:
        self.got: list[str] = []
        self.fail_on = fail_on
        self.gate = gate
        self.closed_with: float | None = None

    async def start(self) -> None:
        pass

    async def deliver(self, tr: Transition) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if tr.slo == self.fail_on:
            raise RuntimeError("receiver exploded")
        self.got.append(f"{tr.slo}/{tr.state}")

    async def close(self, timeout_s: float) -> None:
        self.closed_with = timeout_s

    def stats(self) -> dict[tuple[str, str], int]:
        return {("rec", "delivered"): len(self.got)}


@pytest.mark.asyncio
async def test_every_sink_gets_every_transition_in_order_despite_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, healthy = Recording(fail_on="b"), Recording()
    delivery = Delivery([failing, healthy])
    await delivery.start()
    for name in ("a", "b", "c"):
        delivery.put(transition(name))
    delivery.put(transition("a", "resolved"))
    await delivery.drain(5.0)
    assert healthy.got == ["a/firing", "b/firing", "c/firing", "a/resolved"]
    assert failing.got == ["a/firing", "c/firing", "a/resolved"]
    assert any("failed to deliver b/page" in r.getMessage() for r in caplog.records)
    assert delivery.stats() == {("rec", "delivered"): 7}
    await delivery.close(1.5)
    assert failing.closed_with == healthy.closed_with == 1.5


@pytest.mark.asyncio
async def test_drain_gives_up_after_its_timeout_and_says_how_many_are_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    stuck = Recording(gate=asyncio.Event())
    delivery = Delivery([stuck])
    await delivery.start()
    delivery.put(transition("a"))
    delivery.put(transition("b"))
    await asyncio.sleep(0)
    await delivery.drain(0.05)
    assert stuck.got == []
    assert delivery.pending() == 1  # one taken by the worker, one still queued
    assert any("1 alert transitions not delivered" in r.getMessage() for r in caplog.records)
    await delivery.close(0.1)
