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

Event time passes only what has been consumed (see `engine.core.evaluator`): a live
caller passes the cap on the watermark (`watermark_cap_s`) and, to keep that cap per
stream, the first record of each stream in the batch (`stream_starts`); the result then
says the newest event time each stream brought (`stream_times_s`). Replay applies the
future limit from the watermark (`stream_future`): the last line of a block waits for
the first of the next one, which decides whether a far jump is a gap or a bad line,
and `flush` decides what waits at the end, so blocks split anywhere give one result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.core.decode import DecodedBatch, Event, RecordDecoder, WireFormat
from engine.core.evaluator import Evaluator, Transition
from engine.core.matching import EventColumns

if TYPE_CHECKING:
    from engine.core.otlp import OtlpDecoder

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
    stream_times_s: npt.NDArray[np.float64] | None = None
    """With `stream_starts`: per stream, the newest event time of the batch (capped at
    `now_s`, too-far-in-future events left out), NaN where it brought none."""


class Ingestor:
    """Feeds one evaluator; keeps one reusable decoder per wire format."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._decoders: dict[WireFormat, RecordDecoder | OtlpDecoder] = {}
        self.spans_ignored = 0
        """OTLP spans that are not SERVER spans, in accepted records: not requests this
        service served, so neither events nor rejections (and not in the rejection
        ratio an operator alerts on)."""
        self._held: tuple[list[Event], npt.NDArray[np.int32]] | None = None
        """Replay: the events of the last line with a time (and their records, numbered
        below 0), waiting for the next line. Held as events, not columns: the
        classifier's key ids may be reset before they are counted."""

    def _decoder(self, fmt: WireFormat) -> RecordDecoder | OtlpDecoder:
        dec = self._decoders.get(fmt)
        if dec is None:
            if fmt == "otlp_proto" or fmt == "otlp_json":
                # imported when first needed: protobuf and the OTLP classes take tens of
                # milliseconds to load, which JSON-only runs and `replay` need not pay
                from engine.core.otlp import OtlpDecoder

                dec = OtlpDecoder(fmt)
            else:
                dec = RecordDecoder(fmt)
            self._decoders[fmt] = dec
        return dec

    def records(
        self,
        values: Sequence[bytes | None],
        fmt: WireFormat = "json",
        *,
        now_s: float | None = None,
        record_times: RecordTimes | None = None,
        by_event_time: bool = True,
        watermark_cap_s: float | None = None,
        stream_starts: Sequence[int] | None = None,
    ) -> IngestResult:
        """Count a batch of record values of one wire format.

        `now_s` is the wall clock of a live stream (it bounds how far in the future an
        event may be); None in replay, which has no wall clock. `watermark_cap_s` caps
        the watermark (`Evaluator.ingest`). `stream_starts`, increasing from 0: the index
        of the first record of each stream (partition) in `values`, whose newest event
        times the result reports."""
        batch = self._decoder(fmt).decode_batch(values)
        ev = self.evaluator
        rejections = self._rejections(batch)
        transitions: list[Transition] = []
        stream_times = None
        if stream_starts is not None:
            stream_times = np.full(len(stream_starts), np.nan)
        if batch.events:
            cols = ev.classifier.columns(batch.events, batch.record_index, record_times)
            if stream_starts is not None:
                stream_times = self._stream_times(cols, stream_starts, now_s)
            if by_event_time:
                cols = cols.take(np.argsort(cols.ts_s, kind="stable"))
            transitions = ev.ingest(cols, now_s=now_s, watermark_cap_s=watermark_cap_s)
        return IngestResult(transitions, rejections, batch.n_records, stream_times)

    def json_lines(
        self, block: bytes, *, by_event_time: bool = False, stream_future: bool = False
    ) -> IngestResult:
        """Count a block of whole JSON lines (replay): one msgspec call for the block
        when every line is good, else line by line with the bad lines rejected.

        `stream_future`: the future limit counts from the watermark (`Evaluator.ingest`);
        the events of the block's last line with a time then wait for the next block
        (or `flush`), which holds the line that decides about them. File order only."""
        if stream_future and by_event_time:
            raise ValueError("stream_future decides in file order: not with by_event_time")
        dec = self._decoder("json")
        assert isinstance(dec, RecordDecoder)
        batch = dec.json_lines(block)
        if batch is None:
            batch = dec.decode_batch([ln for ln in block.split(b"\n") if ln.strip()])
        ev = self.evaluator
        rejections = self._rejections(batch)
        transitions: list[Transition] = []
        if not stream_future:
            if batch.events:
                cols = ev.classifier.columns(batch.events, batch.record_index)
                if by_event_time:
                    cols = cols.take(np.argsort(cols.ts_s, kind="stable"))
                transitions = ev.ingest(cols)
            return IngestResult(transitions, rejections, batch.n_records)
        events, records = batch.events, batch.record_index
        if self._held is not None:
            held_events, held_records = self._held
            self._held = None
            if records is None:
                records = np.arange(len(events), dtype=np.int32)
            events = held_events + events
            records = np.concatenate((held_records, records))
        if events:
            cols = ev.classifier.columns(events, records)
            timed = np.flatnonzero(~np.isnan(cols.ts_s))
            next_ts = None
            if len(timed):  # hold the last line with a time, and what follows it
                cut = int(np.searchsorted(cols.record, cols.record[timed[-1]], side="left"))
                next_ts = float(cols.ts_s[timed[np.searchsorted(timed, cut)]])
                # its records come before any of the next block's (numbered from 0)
                _, rank = np.unique(cols.record[cut:], return_inverse=True)
                self._held = (events[cut:], (rank - (int(rank.max()) + 1)).astype(np.int32))
                cols = cols.take(np.arange(cut))
            transitions = ev.ingest(cols, stream_future=True, next_ts_s=next_ts)
        return IngestResult(transitions, rejections, batch.n_records)

    def flush(self) -> list[Transition]:
        """End of the stream: decide the events still waiting (`json_lines` with
        `stream_future`), then evaluate the tick that closes the last event
        (`Evaluator.flush`)."""
        transitions: list[Transition] = []
        if self._held is not None:
            (events, records), self._held = self._held, None
            cols = self.evaluator.classifier.columns(events, records)
            transitions = self.evaluator.ingest(cols, stream_future=True, next_ts_s=None)
        return transitions + self.evaluator.flush()

    def _rejections(self, batch: DecodedBatch) -> list[Rejection]:
        rejections = [Rejection(i, reason, detail) for i, reason, detail in batch.rejected]
        for r in rejections:
            self.evaluator.reject(r.reason)
        self.spans_ignored += batch.ignored
        return rejections

    def _stream_times(
        self, cols: EventColumns, stream_starts: Sequence[int], now_s: float | None
    ) -> npt.NDArray[np.float64]:
        """Per stream, the newest event time (capped at `now_s`, beyond the future limit
        left out); `cols` in record order."""
        t = cols.ts_s
        if now_s is not None:
            t = np.where(t > now_s + self.evaluator.future_s, np.nan, np.minimum(t, now_s))
        out = np.full(len(stream_starts), np.nan)
        n = len(t)
        if n == 0:
            return out
        starts = np.searchsorted(cols.record, np.asarray(stream_starts), side="left")
        ends = np.append(starts[1:], n)
        some = ends > starts
        if some.any():
            # between two streams with events lie only streams without: reduceat's
            # segments are exactly the streams' events
            out[some] = np.fmax.reduceat(t, starts[some])
        return out
