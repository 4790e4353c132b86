"""A partition engine: what an evaluate worker keeps for one counts partition it owns.

Its evaluator (engine.core.partition_counts, the SLOs of that partition only), the
delivery of its alert transitions to the sinks (engine.runtime.delivery, sinks of its
own), and the counts-topic offset it has applied. Its snapshot, one changelog record
(engine.adapters.kafka.changelog), is the evaluator's state (engine.core.snapshot), the
undelivered alerts as the state file keeps them, the writers' watermark not yet advanced
to (engine.core.partition_counts), the gate overrides of its services (still in force
when restored; wall-clock expiry, as in one process), their changes, and the offset
they cover, taken in one event-loop step between records, so they always agree.

Restored on another worker, the engine reads the counts on from that offset: the records
after the snapshot give the same transitions again (event time moves only by the
records), with the same webhook-ids, and the alerts it had firing stay firing without a
new page; what was not delivered is sent by the new owner.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import msgspec

from engine.adapters.alerts.sinks import Sink
from engine.core import snapshot
from engine.core.changes import ChangeLog
from engine.core.config import Config
from engine.core.evaluator import Evaluator, Transition
from engine.core.overrides import Overrides
from engine.core.partition_counts import PartitionCounts
from engine.core.snapshot import SnapshotError
from engine.runtime.delivery import Delivery, firing_alerts
from engine.runtime.incidents import IncidentRecorder

__all__ = ["SNAPSHOT_FORMAT", "PartitionEngine", "PartitionSnapshot"]

log = logging.getLogger("burnrate.runtime.partition_engine")

SNAPSHOT_FORMAT: Final = "burnrate-partition/1"


class PartitionSnapshot(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str = SNAPSHOT_FORMAT
    partition: int
    offset: int
    """The next counts-topic offset to read: the evaluator holds every record before it."""
    evaluator: bytes
    deliveries: bytes = b""
    pending_watermark_s: float | None = None
    """The newest writer watermark read, time not advanced to yet (None: none read)."""
    overrides: bytes = b""
    """The gate overrides of the partition's services (`Overrides.encode`)."""
    changes: bytes = b""
    """The changes of the partition's services (`ChangeLog.encode`)."""


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(PartitionSnapshot)


class PartitionEngine:
    """One owned counts partition: evaluator, delivery, applied offset."""

    def __init__(
        self,
        partition: int,
        config: Config,
        slos: Iterable[str],
        sinks: Sequence[Sink],
        clock: Callable[[], float] = time.time,
        partitions: int = 1,
    ) -> None:
        self.partition = partition
        self.counts = PartitionCounts(config, slos)
        self.delivery = Delivery(sinks)
        self.clock = clock
        self.overrides = Overrides()
        """The gate overrides of the partition's services (a service's SLOs all live in
        one partition, engine.core.deltas), moved with it in the snapshot."""
        self.incidents: IncidentRecorder | None = None
        """The incident book of the partition's services (with `incidents:`), fed here
        after each record or batch (engine.runtime.evaluate_incidents)."""
        settings = config.changes
        self.changes = ChangeLog(
            settings.attribution_window_s,
            settings.max_kept,
            first_id=partition + 1,
            id_step=max(partitions, partition + 1),
        )
        """The changes of the partition's services (posted to this worker's
        `/v1/changes`), numbered apart from every other partition's, moved with it in
        the snapshot; alerts in a change's attribution window name it."""
        self._service_of = {s.name: s.service for s in config.slos}
        self.edits = 0
        """Counts what the HTTP routes changed here: overrides set or ended, changes
        taken (`edited`)."""
        self.saved_edits = 0
        """`edits` as of the last snapshot written."""
        self.offset = 0
        """The next counts offset to apply (0: from the start of the partition)."""
        self.saved_offset: int | None = None
        """The offset of the last snapshot written (None: none by this engine)."""
        self.restored = False
        self._restored_deliveries: bytes | None = None
        self.transitions = 0

    @property
    def evaluator(self) -> Evaluator:
        return self.counts.evaluator

    def apply(self, offset: int, value: bytes | None) -> list[Transition]:
        """Apply the record at `offset`, unless it is before the applied offset (a
        record fetched twice around a rebalance); its transitions go to the sinks."""
        if offset < self.offset:
            return []
        transitions = self.counts.apply_record(value)
        self.offset = offset + 1
        return self._applied(transitions)

    def apply_batch(self, records: Sequence[tuple[int, bytes | None]]) -> list[Transition]:
        """`apply` of each (offset, value), in one pass of the evaluator (the same
        result: `PartitionCounts.apply_records`)."""
        values = [value for offset, value in records if offset >= self.offset]
        if not values:
            return []
        transitions = self.counts.apply_records(values)
        self.offset = records[-1][0] + 1
        return self._applied(transitions)

    def use(self, evaluator: Evaluator, ended: Iterable[Transition] = ()) -> None:
        """Evaluate the partition's SLOs of a reloaded config with `evaluator` (carrying
        the state of the SLOs it kept, engine.core.reload); `ended` (the `resolved` of
        alerts of SLOs removed or reset) goes to the sinks and incidents first."""
        self._applied(list(ended), tick=False)
        self.counts.use(evaluator)
        self._service_of = {s.name: s.service for s in evaluator.config_slos}
        if self.incidents is not None:
            self.incidents.use(evaluator)

    def ended(self, transitions: Iterable[Transition]) -> None:
        """The partition holds no SLO of a reloaded config: the `resolved` of its
        firing alerts go to the sinks and incidents before it closes."""
        self._applied(list(transitions), tick=False)

    def _applied(self, transitions: list[Transition], *, tick: bool = True) -> list[Transition]:
        """Hand `transitions` (named with the changes in whose window they fall) to the
        sinks and the incident book; returns them as handed."""
        if transitions and len(self.changes):
            # alerts in a change's attribution window name it, with what it burnt so far
            self.changes.update(self.evaluator)
            transitions = [
                self.changes.annotate(tr, self._service_of.get(tr.slo)) for tr in transitions
            ]
        for tr in transitions:
            self.delivery.put(tr)
        self.transitions += len(transitions)
        if self.incidents is not None:
            if transitions:
                self.incidents.transitions(transitions)
            if tick:
                self.incidents.tick()  # event time moved: quiet incidents close
        return transitions

    def edited(self) -> None:
        """An override was set or ended, or a change taken: the next save writes a
        snapshot even when no record was applied since the last."""
        self.edits += 1

    def snapshot(self) -> bytes:
        """This engine's changelog record (synchronous: one step with the offset)."""
        return _ENCODER.encode(
            PartitionSnapshot(
                partition=self.partition,
                offset=self.offset,
                evaluator=snapshot.dump(self.evaluator),
                deliveries=self.delivery.snapshot(),
                pending_watermark_s=(
                    pending if math.isfinite(pending := self.counts.pending_watermark_s) else None
                ),
                overrides=self.overrides.encode(),
                changes=self.changes.encode(),
            )
        )

    def restore(self, data: bytes) -> bool:
        """Continue from a changelog record; False (the engine left empty, from offset 0)
        when it cannot be read or does not fit this config (the partition's SLOs
        changed: their counts are rebuilt from the counts topic)."""
        try:
            saved = _DECODER.decode(data)
            if saved.format != SNAPSHOT_FORMAT or saved.partition != self.partition:
                raise SnapshotError(f"a snapshot of {saved.format} partition {saved.partition}")
            if saved.offset < 0:
                raise SnapshotError(f"offset {saved.offset}")
            pending = saved.pending_watermark_s
            if pending is not None and not math.isfinite(pending):
                raise SnapshotError(f"pending watermark {pending}")
            overrides = Overrides()
            checked = ChangeLog(
                self.changes.window_s,
                self.changes.max_kept,
                first_id=self.changes.first_id,
                id_step=self.changes.id_step,
            )
            try:
                overrides.load(saved.overrides, self.clock())
                checked.load(saved.changes)
            except ValueError as exc:
                raise SnapshotError(str(exc)) from None
            snapshot.load(self.evaluator, saved.evaluator)
        except (msgspec.DecodeError, SnapshotError) as exc:
            log.warning(
                "partition %d: ignoring its changelog snapshot (%s); counting it again "
                "from the start of the counts topic",
                self.partition,
                exc,
                extra={"data": {"event": "partition_state_ignored", "partition": self.partition}},
            )
            return False
        self.counts.load_pending(pending)
        self.overrides = overrides
        self.changes.load(saved.changes)  # read above: the incident book keeps this log
        self.offset = self.saved_offset = saved.offset
        self.restored = True
        self._restored_deliveries = saved.deliveries
        return True

    async def start(self) -> None:
        """Start the sinks and, after a restore, hand them what was owed (before any
        new transition); then the incident book takes back its services' open
        incidents from the store."""
        await self.delivery.start()
        if self.restored:
            await self.delivery.restore(self._restored_deliveries, firing_alerts(self.evaluator))
            self._restored_deliveries = None
        if self.incidents is not None:
            await self.incidents.start()  # IncidentStoreError: the store cannot be read

    async def close(self, timeout_s: float) -> None:
        await self.delivery.drain(timeout_s / 2)
        await self.delivery.close(timeout_s / 4)
        if self.incidents is not None:
            await self.incidents.close(timeout_s / 4)
