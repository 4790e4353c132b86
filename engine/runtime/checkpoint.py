"""Checkpoints: the evaluator's state, the offsets it covers, and the order of commits.

Kafka offsets say which records the group has consumed; the state file says which
records the counts hold. Order matters: the snapshot and its offsets are taken in one
event-loop step between batches (`KafkaSource.settled`), written atomically, and only
then are offsets committed to Kafka. Without a state store the applied offsets are
committed every `COMMIT_INTERVAL_S` (at least once: a crash re-reads at most that much).

At start, a snapshot that fits the config is restored and the source reads on from its
offsets instead of the group's committed ones; one that does not fit (another config,
corrupt, another version) is ignored with a warning, and the engine starts empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from engine.adapters.kafka.source import KafkaSource
from engine.adapters.store.state import StateStore
from engine.core import snapshot
from engine.core.evaluator import Evaluator
from engine.core.snapshot import SnapshotError

__all__ = ["COMMIT_INTERVAL_S", "Checkpoint"]

log = logging.getLogger("burnrate.runtime.checkpoint")

COMMIT_INTERVAL_S: Final = 5.0


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
    ) -> None:
        self.evaluator = evaluator
        self.source = source
        self.store = store
        self.state_interval_s = state_interval_s
        self.commit_interval_s = commit_interval_s
        self.saves = 0
        self.restored = False
        """True when the evaluator started from a state snapshot."""

    def restore(self) -> None:
        """Continue from the state file when there is one that fits this config."""
        store = self.store
        if store is None:
            return
        self.source.offsets.use_state_offsets({})  # track positions from now on, even if empty
        try:
            loaded = store.load()
            if loaded is None:
                log.info("no state snapshot yet; starting with empty windows")
                return
            blob, offsets = loaded
            snapshot.load(self.evaluator, blob)
        except SnapshotError as exc:
            log.warning(
                "ignoring the state snapshot: %s; starting with empty windows from the "
                "group's committed offsets",
                exc,
                extra={"data": {"event": "state_ignored", "reason": str(exc)}},
            )
            return
        self.source.offsets.use_state_offsets(offsets)
        self.restored = True
        log.info(
            "restored state snapshot: %d events over %d SLOs, %d partition offsets",
            int(self.evaluator.counts().events_total.sum()),
            len(self.evaluator.slos),
            len(offsets),
            extra={"data": {"event": "state_restored", "partitions": len(offsets)}},
        )

    async def save(self, reason: str) -> bool:
        """Write the evaluator snapshot and the offsets it covers (taken in one event-loop
        step, never mid-batch), then commit the offsets to Kafka too. Never raises."""
        store = self.store
        if store is None:
            return False
        async with self.source.settled() as offsets:
            if offsets is None:
                log.warning("state not saved (%s): a batch was interrupted mid-apply", reason)
                return False
            blob = snapshot.dump(self.evaluator)
        try:
            await asyncio.to_thread(store.save, blob, offsets)
        except OSError as exc:
            log.warning("cannot write the state snapshot (%s): %s", reason, exc)
            return False
        self.saves += 1
        log.debug("state saved (%s): %d bytes, %d partitions", reason, len(blob), len(offsets))
        await self.source.commit(None, reason=f"state {reason}")
        return True

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
        """At shutdown, after the last batch: the final snapshot (when there is a store)."""
        if self.store is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.save("shutdown")
        except TimeoutError:
            log.warning("state snapshot not written before exit (timed out)")
