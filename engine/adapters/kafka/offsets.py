"""Offsets: what was applied, what was committed, what a restored or saved state covers.

Without a state store, delivery is at least once. After a batch is applied, the next
offset of every partition in it is recorded here; `commit` hands the applied offsets
not yet committed to the group coordinator (never raising: a failure is logged and
retried next time, or the records are read again after a rebalance, which costs
duplicates, never losses).

With a state store (`use_state_offsets`), the group's committed offsets are the
fallback a restart uses when the state file does not cover a partition (no file yet,
a damaged one, a partition the file does not name), so they must never pass what a
written snapshot holds: a record committed but in no snapshot would be skipped by the
restart and never counted. So `commit` then sends, for the partitions this member
owns, only the offsets of the last snapshot written durably (`saved`, or the restored
one), never the applied ones; a partition no snapshot covers yet is not committed. On
revoke, the listener first lets the runtime write a snapshot (`before_revoke`, bounded
by REVOKE_SAVE_TIMEOUT_S) so the next owner starts where this one's counts end, then
commits the revoked partitions' snapshot offsets.

The evaluator's restored state counts every record before the offsets saved with it,
so on assignment those partitions are positioned there (`seek`) instead of at the
group's committed offsets, and a revoked partition keeps its position in the state:
the evaluator still holds what was counted from it. When and in what order commits
happen is the runtime's business (its checkpoint); this module only keeps the
positions and talks to the consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["COMMIT_TIMEOUT_S", "REVOKE_SAVE_TIMEOUT_S", "OffsetTracker", "RebalanceListener"]

log = logging.getLogger("burnrate.adapters.kafka.offsets")

COMMIT_TIMEOUT_S = 5.0
REVOKE_SAVE_TIMEOUT_S = 10.0
"""How long a revoke waits for the snapshot it asks for; the rebalance waits as long."""

Partition = tuple[str, int]
BeforeRevoke = Callable[[list[TopicPartition]], Awaitable[object]]


class OffsetTracker:
    """Per partition: the next offset after the last applied record, the last committed
    offset, and (with a state store) the offset up to which the state has counted and
    the offset the last written snapshot holds."""

    def __init__(self) -> None:
        self.consumer: Any = None
        """Set once the consumer has started; commits are refused before."""
        self._applied: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._state: dict[TopicPartition, int] | None = None
        self._saved: dict[TopicPartition, int] = {}
        """With a state store: the offsets of the last snapshot durably written."""
        self._started: dict[TopicPartition, int] = {}
        """Where the consumer started a partition nothing was applied from yet (the
        group's committed offset, or the reset), as it reported it (`started_at`)."""
        self.before_revoke: BeforeRevoke | None = None
        """With a state store: writes a snapshot (the runtime's checkpoint sets it)."""
        self.commit_failures = 0

    # -- positions -------------------------------------------------------------------

    def applied(self, tp: TopicPartition, next_offset: int) -> None:
        self._applied[tp] = next_offset

    def position(self, tp: TopicPartition) -> int | None:
        """Where consumption of `tp` stands: applied, else committed, else where the
        consumer started it, else unknown."""
        pos = self._applied.get(tp)
        if pos is None:
            pos = self._committed.get(tp)
        return self._started.get(tp) if pos is None else pos

    def started_at(self, tp: TopicPartition, offset: int) -> None:
        """The consumer reports its position in `tp`, from which nothing was applied
        yet: lag is known from it before any record comes (an idle partition)."""
        self._started[tp] = offset

    def applied_offsets(self) -> dict[Partition, int]:
        return {(tp.topic, tp.partition): off for tp, off in self._applied.items()}

    def has_applied(self) -> bool:
        return bool(self._applied)

    def forget(self, tps: Iterable[TopicPartition], *, state_too: bool = False) -> None:
        """Drop what is known of `tps` (revoked, or rewound to re-read)."""
        for tp in tps:
            self._applied.pop(tp, None)
            self._committed.pop(tp, None)
            self._started.pop(tp, None)
            if state_too:
                self._saved.pop(tp, None)
                if self._state is not None:
                    self._state.pop(tp, None)

    # -- state offsets ---------------------------------------------------------------

    def use_state_offsets(self, offsets: Mapping[Partition, int]) -> None:
        """Read from `offsets` (those of a restored evaluator snapshot) instead of the
        group's committed ones: they match the restored counts, so records counted
        before the snapshot are not counted again and none after it are skipped. Also
        keeps, across revocations, the position up to which this evaluator counted, and
        from now on commits only offsets a written snapshot holds (these ones, which
        come from a file, and those passed to `saved`)."""
        self._state = {TopicPartition(t, p): off for (t, p), off in offsets.items()}
        self._saved = dict(self._state)

    @property
    def commits_snapshots(self) -> bool:
        """True with a state store: only offsets of written snapshots are committed."""
        return self._state is not None

    def saved(self, offsets: Mapping[Partition, int]) -> None:
        """A snapshot holding `offsets` is durably written: they may be committed."""
        self._saved = {TopicPartition(t, p): off for (t, p), off in offsets.items()}

    def saved_offsets(self) -> dict[Partition, int]:
        return {(tp.topic, tp.partition): off for tp, off in self._saved.items()}

    def unsaved(self, tps: Iterable[TopicPartition]) -> bool:
        """True when some of `tps` was applied past what the last snapshot holds."""
        return any(tp in self._applied and self._applied[tp] != self._saved.get(tp) for tp in tps)

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
        """Commit the offsets (of `partitions`, or all owned) not committed yet: the
        applied ones, or with a state store those of the last written snapshot for the
        partitions this member owns. Never raises."""
        consumer = self.consumer
        if consumer is None:
            return False
        owned: Iterable[TopicPartition] = self._applied if partitions is None else partitions
        source = self._saved if self.commits_snapshots else self._applied
        wanted = {tp: source[tp] for tp in owned if tp in self._applied and tp in source}
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
    """Commits before partitions go (with a state store: after asking for a snapshot, and
    only what a snapshot holds) and positions new ones from the state; never waits for
    the consume loop beyond one batch (waiting on a fetch here would deadlock)."""

    def __init__(
        self,
        offsets: OffsetTracker,
        consumer: Any,
        on_revoked: Any = None,
        *,
        on_rebalance: Callable[[], None] | None = None,
        on_assigned: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        self._offsets = offsets
        self._consumer = consumer  # the tracker only gets it once start() returns
        self._on_revoked = on_revoked
        self._on_rebalance = on_rebalance
        """Called first when a rebalance begins: the assignment is unknown until
        `on_assigned` is called with the new one."""
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        if self._on_rebalance is not None:
            self._on_rebalance()
        revoked = list(revoked)
        offsets = self._offsets
        if revoked and offsets.before_revoke is not None and offsets.unsaved(revoked):
            try:
                async with asyncio.timeout(REVOKE_SAVE_TIMEOUT_S):
                    await offsets.before_revoke(revoked)
            except TimeoutError:
                log.warning(
                    "no snapshot within %.0fs of the revoke: committing the last one's "
                    "offsets; the next owner reads again what was counted since",
                    REVOKE_SAVE_TIMEOUT_S,
                )
            except Exception:  # the revoke must go on: commit, forget, call back
                log.exception("the snapshot before the revoke failed")
        if revoked:
            await offsets.commit(revoked, reason="revoke")
        self._offsets.keep_positions(revoked)
        self._offsets.forget(revoked)
        if self._on_revoked is not None:
            self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        self._offsets.seek_to_state(self._consumer, assigned)
        if self._on_assigned is not None:
            self._on_assigned(assigned)
        tps = sorted((tp.topic, tp.partition) for tp in assigned)
        log.info(
            "partitions assigned: %s",
            ", ".join(f"{t}[{p}]" for t, p in tps) or "none",
            extra={"data": {"event": "assigned", "partitions": [f"{t}:{p}" for t, p in tps]}},
        )
