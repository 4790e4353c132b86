"""Checkpoints: the evaluator's state, the offsets it covers, and the order of commits.

Kafka offsets say which records the group has consumed; the state file says which
records the counts hold. Order matters: the snapshot, its offsets and the undelivered
alerts are taken in one event-loop step between batches (`KafkaSource.settled`),
written atomically and durably, and only then are offsets committed to Kafka: exactly
the offsets of that snapshot, never the applied ones (`OffsetTracker.saved`), so the
group's committed offsets never pass what a written snapshot holds, also on revoke
(which asks for a snapshot first, `before_revoke`) and at shutdown. A partition no
snapshot covers yet is not committed; a kill before the first snapshot re-reads it.
Without a state store the applied offsets are committed every `COMMIT_INTERVAL_S` (at
least once: a crash re-reads at most that much).

Saves run one at a time, each as its own task: a caller that stops waiting (a timeout)
does not cut a write short, and an older write never lands after a newer one.

At start, stale temp files of killed writes are removed, then a snapshot that fits the
config is restored and the source reads on from its offsets instead of the group's
committed ones; one that does not fit (another config, corrupt, another version,
impossible offsets) is ignored with a warning, and the engine starts empty.

The gate overrides (engine.core.overrides) are saved with every snapshot and restored
with it, those expired by the wall clock at the restart dropped; so are the changes
(engine.core.changes), with the budget attributed to each so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from engine.adapters.kafka.source import KafkaSource
from engine.adapters.store.state import StateStore
from engine.core import snapshot
from engine.core.changes import ChangeLog
from engine.core.evaluator import Evaluator
from engine.core.overrides import Overrides
from engine.core.snapshot import SnapshotError

if TYPE_CHECKING:
    from aiokafka import TopicPartition

__all__ = ["COMMIT_INTERVAL_S", "Checkpoint", "DeliveryState"]

log = logging.getLogger("burnrate.runtime.checkpoint")

COMMIT_INTERVAL_S: Final = 5.0


class DeliveryState(Protocol):
    """The undelivered alerts saved with each snapshot (engine.runtime.delivery)."""

    def snapshot(self) -> bytes: ...

    def undelivered(self) -> int: ...


class Checkpoint:
    """Restores at start, saves and commits while running and at shutdown."""

    def __init__(
        self,
        evaluator: Evaluator,
        source: KafkaSource,
        store: StateStore | None,
        *,
        state_interval_s: float,
        commit_interval_s: float = COMMIT_INTERVAL_S,
        deliveries: DeliveryState | None = None,
        overrides: Overrides | None = None,
        changes: ChangeLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.evaluator = evaluator
        self.source = source
        self.store = store
        self.state_interval_s = state_interval_s
        self.commit_interval_s = commit_interval_s
        self.deliveries = deliveries
        self.overrides = overrides
        self.changes = changes
        self.clock = clock
        self.saves = 0
        self.restored = False
        """True when the evaluator started from a state snapshot."""
        self.restored_deliveries: bytes | None = None
        """The undelivered alerts of the restored snapshot (empty: a version 1 file)."""
        self._save_lock = asyncio.Lock()

    def restore(self) -> None:
        """Continue from the state file when there is one that fits this config."""
        store = self.store
        if store is None:
            return
        # track positions and commit only saved offsets from now on, even with no file
        self.source.offsets.use_state_offsets({})
        self.source.offsets.before_revoke = self._before_revoke
        store.clean_temp_files()
        try:
            loaded = store.read()
            if loaded is None:
                log.info("no state snapshot yet; starting with empty windows")
                return
            blob, offsets, deliveries = loaded.evaluator, loaded.offsets, loaded.deliveries
            snapshot.load(self.evaluator, blob)
        except SnapshotError as exc:
            log.warning(
                "ignoring the state snapshot: %s; starting with empty windows from the "
                "group's committed offsets",
                exc,
                extra={"data": {"event": "state_ignored", "reason": str(exc)}},
            )
            return
        self._restore_overrides(loaded.overrides)
        self._restore_changes(loaded.changes)
        self.source.offsets.use_state_offsets(offsets)
        self.restored = True
        self.restored_deliveries = deliveries
        log.info(
            "restored state snapshot: %d events over %d SLOs, %d partition offsets",
            int(self.evaluator.counts().events_total.sum()),
            len(self.evaluator.config_slos),
            len(offsets),
            extra={"data": {"event": "state_restored", "partitions": len(offsets)}},
        )

    def _restore_overrides(self, data: bytes) -> None:
        if self.overrides is None:
            return
        try:
            n = self.overrides.load(data, self.clock())
        except ValueError as exc:
            log.warning("ignoring the saved gate overrides: %s", exc)
            return
        if n:
            log.info(
                "restored %d gate overrides",
                n,
                extra={"data": {"event": "overrides_restored", "count": n}},
            )

    def _restore_changes(self, data: bytes) -> None:
        if self.changes is None:
            return
        try:
            n = self.changes.load(data)
        except ValueError as exc:
            log.warning("ignoring the saved changes: %s", exc)
            return
        if n:
            log.info(
                "restored %d changes", n, extra={"data": {"event": "changes_restored", "count": n}}
            )

    async def save(self, reason: str) -> bool:
        """Write the evaluator snapshot, the offsets it covers and the undelivered alerts
        (taken in one event-loop step, never mid-batch), then commit those offsets to
        Kafka. Never raises. Cancelling the caller does not cancel the write."""
        if not await self._write(reason):
            return False
        await self.source.commit(None, reason=f"state {reason}")
        return True

    async def _write(self, reason: str) -> bool:
        """The write of `save`, in a task of its own that outlives a cancelled caller."""
        if self.store is None:
            return False
        return await asyncio.shield(asyncio.ensure_future(self._write_now(self.store, reason)))

    async def _write_now(self, store: StateStore, reason: str) -> bool:
        async with self._save_lock:
            async with self.source.settled() as offsets:
                if offsets is None:
                    log.warning("state not saved (%s): a batch was interrupted mid-apply", reason)
                    return False
                blob = snapshot.dump(self.evaluator)
                deliveries = b"" if self.deliveries is None else self.deliveries.snapshot()
                overrides = b"" if self.overrides is None else self.overrides.encode()
                changes = b"" if self.changes is None else self.changes.encode()
            try:
                await asyncio.to_thread(store.save, blob, offsets, deliveries, overrides, changes)
            except OSError as exc:
                log.warning("cannot write the state snapshot (%s): %s", reason, exc)
                return False
            self.saves += 1
            self.source.offsets.saved(offsets)
            log.debug("state saved (%s): %d bytes, %d partitions", reason, len(blob), len(offsets))
        return True

    async def _before_revoke(self, revoked: list[TopicPartition]) -> None:
        """Partitions are about to go: a snapshot now lets the revoke commit up to where
        this member counted, so the next owner neither misses nor repeats records."""
        await self.save("revoke")

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: commit applied offsets every `commit_interval_s` and, with a
        store, save a snapshot every `state_interval_s`. The last save and commit
        belong to the shutdown (`finish`)."""
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + self.commit_interval_s
        next_save = loop.time() + self.state_interval_s if self.store is not None else None
        while not stop.is_set():
            due = next_commit if next_save is None else min(next_commit, next_save)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(due - loop.time(), 0.0)):
                    await stop.wait()
            if stop.is_set():
                return
            now = loop.time()
            if next_save is not None and now >= next_save:
                await self.save("periodic")
                next_save = loop.time() + self.state_interval_s
            if now >= next_commit:
                await self.source.commit(None, reason="periodic")
                next_commit = loop.time() + self.commit_interval_s

    async def finish(self, timeout_s: float) -> None:
        """At shutdown, after the last batch and the sinks' last deliveries: the final
        snapshot (when there is a store), then the commit of its offsets, both within
        `timeout_s` (the source commits them once more as it closes)."""
        if self.store is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                written = await self._write("shutdown")
        except TimeoutError:
            log.warning("state snapshot not written before exit (timed out)")
            return
        if not written:
            return
        kept = 0 if self.deliveries is None else self.deliveries.undelivered()
        if kept:
            log.warning(
                "%d undelivered alert transitions kept in the state file; they are sent "
                "after the restart",
                kept,
                extra={"data": {"event": "deliveries_kept", "count": kept}},
            )
        await self.source.commit(
            None, reason="state shutdown", timeout_s=max(deadline - loop.time(), 0.1)
        )
