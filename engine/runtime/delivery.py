"""Delivery: alert transitions from the evaluator to every sink, off the consume path.

Transitions are queued as they happen and handed to each sink in order by one task;
a sink only queues them in turn (its own worker retries), so a slow or failing
receiver never holds up the evaluator or the other sinks. At shutdown the queue gets
a bounded time to drain; what is left is counted and logged.

Across restarts (with a `state:` section). A page that fires while its receiver is
down must not be lost to a restart, and a receiver must never hear `resolved` first.
So what is not delivered is kept with the evaluator's state: `snapshot()` (taken by
the checkpoint in the same event-loop step as the evaluator's snapshot, so the two
agree) holds, per sink, the transitions it has not delivered and the alerts its
receiver was told about, the transitions not handed to it yet, and the firing
transition of every alert firing now. The service saves it last at shutdown, after
the sinks had their time to deliver. After a restart, `restore()` gives each sink
(matched by its `identity`: kind and a digest of the URL) what it still owed, in
order, before any new transition; then each sink announces, with the labels and
`startsAt` it fired with and the same `webhook-id`, every firing alert its receiver
was never told about: all of them for a receiver new to the state file or a state
file written before this was kept (version 1). A sink that never had an alert's
firing taken drops its resolve (see `engine.adapters.alerts.pending`).

Without a state store nothing is kept: the evaluator starts empty after a restart and
only fires what the records read then make it fire.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence

import msgspec

from engine.adapters.alerts.pending import KeepsDeliveries, SinkState
from engine.adapters.alerts.sinks import Sink, collect_stats
from engine.core.evaluator import AlertKey, Evaluator, Transition

__all__ = ["Delivery", "firing_alerts"]

log = logging.getLogger("burnrate.runtime.delivery")

Key = AlertKey


class _SinkRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state: SinkState | None = None
    """The sink's own (None for sinks that keep none, e.g. the console)."""
    waiting: list[Transition] = msgspec.field(default_factory=list)
    """Not handed to the sink yet, oldest first."""


class _Deliveries(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str = "burnrate-deliveries/1"
    firing: list[Transition] = msgspec.field(default_factory=list)
    sinks: dict[str, _SinkRecord] = msgspec.field(default_factory=dict)


_DECODER = msgspec.msgpack.Decoder(_Deliveries)
_ENCODER = msgspec.msgpack.Encoder()


class Delivery:
    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.ids = _identities(self.sinks)
        self._queue: asyncio.Queue[Transition] = asyncio.Queue()
        self._waiting: deque[Transition] = deque()
        """The queue's items, readable without taking them."""
        self._handing: tuple[Transition, int] | None = None
        """The transition being handed over and the index of the sink it is at."""
        self._firing: dict[Key, Transition] = {}
        self._task: asyncio.Task[None] | None = None

    def put(self, tr: Transition) -> None:
        key = tr.alert_key
        if tr.state == "firing":
            self._firing[key] = tr
        else:
            self._firing.pop(key, None)
        self._waiting.append(tr)
        self._queue.put_nowait(tr)

    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()
        self._task = asyncio.create_task(self._run(), name="deliver")

    async def _run(self) -> None:
        while True:
            tr = await self._queue.get()
            self._waiting.popleft()
            for i, sink in enumerate(self.sinks):
                self._handing = (tr, i)
                try:
                    await sink.deliver(tr)
                except Exception:  # the supervisor: one sink's failure must not stop the others
                    log.exception("sink %s failed to deliver %s/%s", sink, tr.slo, tr.alert_id)
            self._handing = None
            self._queue.task_done()

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every queued transition to reach the sinks."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            log.warning("%d alert transitions not delivered before exit", self._queue.qsize())

    async def close(self, timeout_s: float) -> None:
        """Stop handing over and close the sinks, all within `timeout_s` (each logs what
        it leaves behind; `snapshot()` still has it)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        if self.sinks:
            await asyncio.gather(*(sink.close(timeout_s) for sink in self.sinks))

    def stats(self) -> dict[tuple[str, str], int]:
        """Delivery outcomes of the HTTP sinks (webhook, Alertmanager, PagerDuty), keyed
        (receiver, outcome)."""
        return collect_stats(self.sinks)

    # -- across restarts -------------------------------------------------------------

    def undelivered(self) -> int:
        """Transitions some sink has not delivered (each counted once per sink)."""
        total = 0
        for i, sink in enumerate(self.sinks):
            total += len(self._waiting_for(i))
            if isinstance(sink, KeepsDeliveries):
                total += len(sink.delivery_state().queued)
        return total

    def snapshot(self) -> bytes:
        """What is undelivered now and what is firing (see the module docstring).
        Synchronous: the caller takes it in one step with the evaluator's snapshot."""
        sinks = {
            sink_id: _SinkRecord(
                state=sink.delivery_state() if isinstance(sink, KeepsDeliveries) else None,
                waiting=self._waiting_for(i),
            )
            for i, (sink_id, sink) in enumerate(zip(self.ids, self.sinks, strict=True))
        }
        return _ENCODER.encode(_Deliveries(firing=list(self._firing.values()), sinks=sinks))

    def _waiting_for(self, index: int) -> list[Transition]:
        handing = self._handing
        # a sink being handed a transition may not have taken it yet: count it as waiting
        first = [handing[0]] if handing is not None and handing[1] <= index else []
        return [*first, *self._waiting]

    async def restore(self, data: bytes | None, firing_now: Sequence[Transition]) -> None:
        """After the evaluator was restored from the state file whose deliveries are
        `data` (None or empty: a file without them) and has `firing_now` firing (see
        `firing_alerts`): give each sink what it still owed, then let it announce the
        firing alerts its receiver does not know of. Call once, after `start()` and
        before any transition."""
        saved: _Deliveries | None = None
        if data:
            try:
                saved = _DECODER.decode(data)
            except (msgspec.DecodeError, ValueError) as exc:
                log.warning(
                    "the undelivered alerts in the state file cannot be read (%s); "
                    "announcing every firing alert again instead",
                    exc,
                )
        kept = {} if saved is None else {t.alert_key: t for t in saved.firing}
        firing = [kept.get(t.alert_key, t) for t in firing_now]
        self._firing = {t.alert_key: t for t in firing}
        records = {} if saved is None else dict(saved.sinks)
        held = 0
        for sink_id, sink in zip(self.ids, self.sinks, strict=True):
            record = records.pop(sink_id, None)
            waiting = [] if record is None else record.waiting
            if isinstance(sink, KeepsDeliveries):
                held += sink.restore(None if record is None else record.state, waiting, firing)
                continue
            for tr in waiting:
                try:
                    await sink.deliver(tr)
                except Exception:  # the supervisor, as in _run
                    log.exception("sink %s failed to deliver %s/%s", sink, tr.slo, tr.alert_id)
        lost = sum(
            len(r.waiting) + (0 if r.state is None else len(r.state.queued))
            for r in records.values()
        )
        if lost:
            log.warning(
                "%d undelivered alert transitions in the state file were for receivers no "
                "longer configured; dropped",
                lost,
            )
        if held:
            log.info(
                "%d alert transitions to deliver after the restart (undelivered before it, "
                "or firing alerts to announce)",
                held,
                extra={"data": {"event": "deliveries_restored", "count": held}},
            )


def firing_alerts(evaluator: Evaluator) -> list[Transition]:
    """A firing transition for every alert the evaluator has firing, as it fired: at the
    tick it fired, on the row that holds (the firing row is not kept apart; it is the
    same unless a slower row took over since), with the burn rates of now; then every
    budget alert and escalation firing (`Evaluator.firing_budget_alerts`)."""
    alerts = evaluator.alerts()
    burn = evaluator.burn_rates()
    out: list[Transition] = []
    for i, name in enumerate(evaluator.names):
        for j, severity in enumerate(evaluator.severities):
            if not alerts.firing[i, j]:
                continue
            r = int(alerts.firing_row[i, j])
            if r < 0:
                continue
            long_s, short_s = evaluator.row_windows_s[r]
            out.append(
                Transition(
                    slo=name,
                    severity=severity,
                    state="firing",
                    at=float(alerts.firing_since_s[i, j]),
                    long_window_s=long_s,
                    short_window_s=short_s,
                    burn_rate_long=_finite(burn[evaluator.row_long[r], i]),
                    burn_rate_short=_finite(burn[evaluator.row_short[r], i]),
                    factor=float(evaluator.factor[i, r]),
                    error_budget_remaining_ratio=_finite(alerts.budget_at_tick_ratio[i]),
                    group=evaluator.group_of(i),
                )
            )
    return out + evaluator.firing_budget_alerts()


def _finite(x: float) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


def _identities(sinks: Sequence[Sink]) -> list[str]:
    """One id per sink, stable across restarts for the same config: the sink's own
    identity (or its type) and, for repeats, its occurrence number."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for sink in sinks:
        base = sink.identity if isinstance(sink, KeepsDeliveries) else type(sink).__name__
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}#{n}")
    return out
