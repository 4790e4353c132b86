"""The ingest pipeline: raw records in, counts, alert transitions and rejections out.

One path for every caller (`burnrate run` per Kafka fetch, `burnrate replay` per block
of lines), so both count the same events the same way:

    decode (per wire format) -> reject bad records -> columns (record time as the `ts`
    fallback) -> [order by event time] -> evaluator.ingest -> transitions

Rejected records are counted on the evaluator by reason and returned with their
index in the input, so an adapter can dead-letter the raw record. The live path sorts
a fetch by event time, so records of a partition a little behind the others are not
judged late against events of the same fetch; replay keeps file order, which is the
order the events were recorded in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.core.decode import DecodedBatch, RecordDecoder, WireFormat
from engine.core.evaluator import Evaluator, Transition

__all__ = ["IngestResult", "Ingestor", "Rejection"]

RecordTimes = Callable[[], npt.NDArray[np.float64]]
"""Builds the records' own timestamps (epoch seconds, NaN where unknown), one per input
record; only called when some event lacks `ts`."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that was not counted: its index in the input, the reason, a detail."""

    record: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class IngestResult:
    transitions: list[Transition]
    rejections: list[Rejection]
    records: int
    """Records in the input, accepted or not."""


class Ingestor:
    """Feeds one evaluator; keeps one reusable decoder per wire format."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._decoders: dict[WireFormat, RecordDecoder] = {}

    def _decoder(self, fmt: WireFormat) -> RecordDecoder:
        dec = self._decoders.get(fmt)
        if dec is None:
            dec = self._decoders[fmt] = RecordDecoder(fmt)
        return dec

    def records(
        self,
        values: Sequence[bytes | None],
        fmt: WireFormat = "json",
        *,
        now_s: float | None = None,
        record_times: RecordTimes | None = None,
        by_event_time: bool = True,
    ) -> IngestResult:
        """Count a batch of record values of one wire format.

        `now_s` is the wall clock of a live stream (it bounds how far in the future an
        event may be); None in replay, which has no wall clock."""
        batch = self._decoder(fmt).decode_batch(values)
        return self._apply(batch, now_s, record_times, by_event_time)

    def json_lines(self, block: bytes, *, by_event_time: bool = False) -> IngestResult:
        """Count a block of whole JSON lines (replay): one msgspec call for the block
        when every line is good, else line by line with the bad lines rejected."""
        dec = self._decoder("json")
        batch = dec.json_lines(block)
        if batch is None:
            batch = dec.decode_batch([ln for ln in block.split(b"\n") if ln.strip()])
        return self._apply(batch, None, None, by_event_time)

    def _apply(
        self,
        batch: DecodedBatch,
        now_s: float | None,
        record_times: RecordTimes | None,
        by_event_time: bool,
    ) -> IngestResult:
        ev = self.evaluator
        rejections = [Rejection(i, reason, detail) for i, reason, detail in batch.rejected]
        for r in rejections:
            ev.reject(r.reason)
        transitions: list[Transition] = []
        if batch.events:
            cols = ev.classifier.columns(batch.events, batch.record_index, record_times)
            if by_event_time:
                cols = cols.take(np.argsort(cols.ts_s, kind="stable"))
            transitions = ev.ingest(cols, now_s=now_s)
        return IngestResult(transitions, rejections, batch.n_records)
