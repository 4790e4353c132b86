"""Offsets: what was applied, what was committed, what a restored state covers.

Delivery is at least once. After a batch is applied, the next offset of every
partition in it is recorded here; `commit` hands the applied offsets not yet committed
to the group coordinator (never raising: a failure is logged and retried next time, or
the records are read again after a rebalance, which costs duplicates, never losses).
When and in what order commits happen is the runtime's business (its checkpoint);
this module only keeps the positions and talks to the consumer.

With a state store, the evaluator's restored state counts every record before the
offsets saved with it, so on assignment those partitions are positioned there
(`seek`) instead of at the group's committed offsets, and a revoked partition keeps
its position in the state: the evaluator still holds what was counted from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["COMMIT_TIMEOUT_S", "OffsetTracker", "RebalanceListener"]

log = logging.getLogger("burnrate.adapters.kafka.offsets")

COMMIT_TIMEOUT_S = 5.0

Partition = tuple[str, int]


class OffsetTracker:
    """Per partition: the next offset after the last applied record, the last committed
    offset, and (with a state store) the offset up to which the state has counted."""

    def __init__(self) -> None:
        self.consumer: Any = None
        """Set once the consumer has started; commits are refused before."""
        self._applied: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._state: dict[TopicPartition, int] | None = None
        self.commit_failures = 0

    # -- positions -------------------------------------------------------------------

    def applied(self, tp: TopicPartition, next_offset: int) -> None:
        self._applied[tp] = next_offset

    def position(self, tp: TopicPartition) -> int | None:
        """Where consumption of `tp` stands: applied, else committed, else unknown."""
        pos = self._applied.get(tp)
        return self._committed.get(tp) if pos is None else pos

    def applied_offsets(self) -> dict[Partition, int]:
        return {(tp.topic, tp.partition): off for tp, off in self._applied.items()}

    def has_applied(self) -> bool:
        return bool(self._applied)

    def forget(self, tps: Iterable[TopicPartition], *, state_too: bool = False) -> None:
        """Drop what is known of `tps` (revoked, or rewound to re-read)."""
        for tp in tps:
            self._applied.pop(tp, None)
            self._committed.pop(tp, None)
            if state_too and self._state is not None:
                self._state.pop(tp, None)

    # -- state offsets ---------------------------------------------------------------

    def use_state_offsets(self, offsets: Mapping[Partition, int]) -> None:
        """Read from `offsets` (those of a restored evaluator snapshot) instead of the
        group's committed ones: they match the restored counts, so records counted
        before the snapshot are not counted again and none after it are skipped. Also
        keeps, across revocations, the position up to which this evaluator counted."""
        self._state = {TopicPartition(t, p): off for (t, p), off in offsets.items()}

    def state_offsets(self) -> dict[Partition, int]:
        """Per partition, the offset up to which the evaluator has counted records: the
        applied ones, and the restored ones of partitions not consumed since."""
        merged = dict(self._state or {})
        merged.update(self._applied)
        return {(tp.topic, tp.partition): off for tp, off in merged.items()}

    def seek_to_state(self, consumer: Any, assigned: Iterable[TopicPartition]) -> None:
        """On assignment, before any fetch: position partitions the state covers."""
        if not self._state:
            return
        for tp in assigned:
            off = self._state.get(tp)
            if off is None:
                continue
            consumer.seek(tp, off)
            self._applied[tp] = off
            log.info(
                "%s[%d]: resuming at offset %d from the state snapshot",
                tp.topic,
                tp.partition,
                off,
                extra={"data": {"event": "seek_state", "partition": f"{tp.topic}:{tp.partition}"}},
            )

    def keep_positions(self, tps: Iterable[TopicPartition]) -> None:
        """Revoked partitions: the evaluator still holds what was counted from them."""
        if self._state is None:
            return
        for tp in tps:
            if tp in self._applied:
                self._state[tp] = self._applied[tp]

    # -- commits ---------------------------------------------------------------------

    async def commit(
        self,
        partitions: Iterable[TopicPartition] | None,
        *,
        reason: str,
        timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> bool:
        """Commit applied offsets (of `partitions`, or all) not committed yet; never raises."""
        consumer = self.consumer
        if consumer is None:
            return False
        wanted = (
            self._applied
            if partitions is None
            else {tp: self._applied[tp] for tp in partitions if tp in self._applied}
        )
        offsets = {tp: off for tp, off in wanted.items() if self._committed.get(tp) != off}
        if not offsets:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.commit(offsets)
        except (KafkaError, TimeoutError) as exc:
            self.commit_failures += 1
            log.warning("offset commit (%s) failed: %r; will retry", reason, exc)
            return False
        self._committed.update(offsets)
        log.debug("committed %d partitions (%s)", len(offsets), reason)
        return True


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits applied offsets before partitions go and positions new ones from the
    state; never waits for the consume loop (waiting on it here would deadlock)."""

    def __init__(
        self,
        offsets: OffsetTracker,
        consumer: Any,
        on_revoked: Any = None,
    ) -> None:
        self._offsets = offsets
        self._consumer = consumer  # the tracker only gets it once start() returns
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        if revoked:
            await self._offsets.commit(revoked, reason="revoke")
        self._offsets.keep_positions(revoked)
        self._offsets.forget(revoked)
        if self._on_revoked is not None:
            self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        self._offsets.seek_to_state(self._consumer, assigned)
        tps = sorted((tp.topic, tp.partition) for tp in assigned)
        log.info(
            "partitions assigned: %s",
            ", ".join(f"{t}[{p}]" for t, p in tps) or "none",
            extra={"data": {"event": "assigned", "partitions": [f"{t}:{p}" for t, p in tps]}},
        )
