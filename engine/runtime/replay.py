"""`burnrate replay`: a deterministic backtest of the SLO policy over a JSON Lines file.

The file holds records in the wire format (one event object or an array of them per
line), plain or gzip-compressed. Time is event time only, so the same file and config
always give the same transitions. Events without `ts` have no record timestamp to fall
back on here and are rejected as `missing_ts`. There is no wall clock, so no
`too_far_in_future` check either: a recorded gap is just a gap.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import msgspec
import numpy as np
import numpy.typing as npt

from engine.core.config import Config
from engine.core.decode import Event, RecordDecoder
from engine.core.evaluator import Evaluator, Transition

CHUNK_BYTES = 4 << 20


class ReplayResult(msgspec.Struct):
    records: int
    transitions: list[Transition]
    evaluator: Evaluator


def read_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """Yield blocks of whole lines and the position reached in the (compressed) file."""
    with path.open("rb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if _is_gzip(path) else raw  # type: ignore[assignment]
        rest = b""
        while True:
            block = stream.read(CHUNK_BYTES)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut], raw.tell()
        if rest.strip():
            yield rest + b"\n", raw.tell()


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def decode_lines(
    decoder: RecordDecoder, block: bytes, evaluator: Evaluator
) -> tuple[list[Event], npt.NDArray[np.int32] | None, int]:
    """Events of a block of lines; bad lines are counted on the evaluator and skipped."""
    batch = decoder.json_lines(block)
    if batch is not None:
        return batch.events, batch.record_index, batch.n_records
    lines = [ln for ln in block.split(b"\n") if ln.strip()]
    batch = decoder.decode_batch(lines)
    for _, reason, _ in batch.rejected:
        evaluator.rejected[reason] += 1
    return batch.events, batch.record_index, len(lines)


def replay(
    config: Config,
    events_path: Path,
    on_transition: Callable[[Transition], None],
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run the evaluator over a file; transitions go to `on_transition` as they happen."""
    evaluator = Evaluator(config)
    decoder = RecordDecoder("json")
    records = 0
    transitions: list[Transition] = []
    for block, pos in read_chunks(events_path):
        events, index, n = decode_lines(decoder, block, evaluator)
        records += n
        if events:
            cols = evaluator.classifier.columns(events, index)
            for tr in evaluator.ingest(cols):
                transitions.append(tr)
                on_transition(tr)
        if on_progress is not None:
            on_progress(pos)
    for tr in evaluator.flush():
        transitions.append(tr)
        on_transition(tr)
    return ReplayResult(records, transitions, evaluator)


def summary_rows(result: ReplayResult) -> list[dict[str, object]]:
    """Per SLO: events, bad, budget remaining, alerts fired, time firing (event time)."""
    ev = result.evaluator
    fired: Counter[tuple[str, str]] = Counter()
    firing_s: dict[str, float] = dict.fromkeys(ev.names, 0.0)
    open_since: dict[tuple[str, str], float] = {}
    for tr in result.transitions:
        key = (tr.slo, tr.severity)
        if tr.state == "firing":
            fired[key] += 1
            open_since[key] = tr.at
        elif key in open_since:
            firing_s[tr.slo] += tr.at - open_since.pop(key)
    end = ev.evaluated_at_s if ev.evaluated_at_s is not None else 0.0
    for (slo, _), since in open_since.items():
        firing_s[slo] += end - since
    budget = ev.budget_remaining()
    rows: list[dict[str, object]] = []
    for i, name in enumerate(ev.names):
        rows.append(
            {
                "slo": name,
                "events": int(ev.events_total[i]),
                "bad": int(ev.bad_events_total[i]),
                "budget_remaining_ratio": None if math.isnan(budget[i]) else float(budget[i]),
                "pages": fired[(name, "page")],
                "tickets": fired[(name, "ticket")],
                "time_firing_s": firing_s[name],
                "still_firing": [sev for (s, sev) in open_since if s == name],
            }
        )
    return rows
