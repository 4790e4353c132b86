"""Count deltas: what ingest workers send evaluate workers (`burnrate run --role`).

An ingest worker decodes and classifies request events as `burnrate run` does, adds
them up per (SLO column, second) and, once per flush, writes one record per SLO to the
counts topic (`kafka.scale.counts_topic`), keyed by the SLO's *partition key*, in a
Kafka transaction with the source offsets they came from. Evaluate workers own the
SLOs of their counts partitions and apply the deltas to their windows.

Wire format (MessagePack, one record per SLO per flush; an array, not a map, so field
names are not repeated in every record):

    [version, slo, watermark, seconds, total, bad, groups]

- `version`: 1. A reader refuses any other (a newer writer must not be half-read).
- `slo`: the SLO's name (`slos[].name`); "" for a heartbeat (below).
- `watermark`: the writer's event-time watermark after this flush (epoch seconds,
  float): how far its sources have been consumed (capped by the partition furthest
  behind, as `burnrate run` caps it). Evaluate workers move event time only by the
  records of their counts partitions (never by their own clock), so the alerts they
  produce are a function of the partition's log: a worker that restores a partition
  from its changelog and re-reads the records after the snapshot produces the same
  transitions, with the same webhook-ids.
- `seconds`: epoch seconds of the buckets (integers, ascending within a group).
- `total`, `bad`: events and bad events in each bucket (integers, 0 <= bad <= total,
  total > 0).
- `groups`: None for an SLO without `group_by`; else one group name per bucket, as
  `Evaluator.group_of` writes it (`region=eu,operation=GET /x`, `__other__`).

A heartbeat (`slo` "", no buckets) carries only the watermark: each flush writes one to
every counts partition that got no delta, so idle partitions still move in event time.

Decoding is strict: unknown versions, wrong types, arrays of different lengths and
impossible counts raise `DeltaError`; the evaluate side counts and skips such a record
(it cannot be repaired, and one bad record must not stop a partition).

Partition key: a service's SLOs live in one partition, so one evaluate worker owns a
service's release gate and its overrides whole; the SLOs a composite SLO reads live with
it. So SLOs of the same service, and every SLO of a composite's family (the composite
and its members, transitively), share one key: the first service in config order among
them (a family without a service: its first SLO's name). Keyed by the service, an
SLO added to or removed from a service does not move the service's other SLOs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec

from engine.core.config import Config

__all__ = [
    "DELTA_VERSION",
    "CountDelta",
    "DeltaError",
    "decode_delta",
    "encode_delta",
    "encode_heartbeat",
    "partition_keys",
]

DELTA_VERSION: Final = 1


class DeltaError(ValueError):
    """A counts record that is not a valid delta."""


class CountDelta(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    version: int
    slo: str
    watermark: float
    seconds: list[int]
    total: list[int]
    bad: list[int]
    groups: list[str] | None = None


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(CountDelta)


def encode_delta(
    slo: str,
    watermark: float,
    seconds: Sequence[int],
    total: Sequence[int],
    bad: Sequence[int],
    groups: Sequence[str] | None = None,
) -> bytes:
    """One counts record (raises DeltaError for arrays that `decode_delta` refuses)."""
    delta = CountDelta(
        DELTA_VERSION,
        slo,
        float(watermark),
        list(seconds),
        list(total),
        list(bad),
        None if groups is None else list(groups),
    )
    _check(delta)
    return _encoder.encode(delta)


def encode_heartbeat(watermark: float) -> bytes:
    """A heartbeat record: no counts, only the writer's watermark."""
    return _encoder.encode(CountDelta(DELTA_VERSION, "", float(watermark), [], [], []))


def decode_delta(data: bytes) -> CountDelta:
    """The delta in `data`; raises DeltaError when it is not a valid version-1 delta."""
    try:
        delta = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        # A newer version may have another shape: name the version when it is readable.
        version = _version_of(data)
        if version is not None and version != DELTA_VERSION:
            raise DeltaError(
                f"delta version {version} (this reader knows {DELTA_VERSION})"
            ) from None
        raise DeltaError(f"not a count delta: {exc}") from None
    _check(delta)
    return delta


def _version_of(data: bytes) -> int | None:
    try:
        head = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return None
    if isinstance(head, list) and head and isinstance(head[0], int):
        return head[0]
    return None


def _check(delta: CountDelta) -> None:
    if delta.version != DELTA_VERSION:
        raise DeltaError(f"delta version {delta.version} (this reader knows {DELTA_VERSION})")
    if not math.isfinite(delta.watermark):
        raise DeltaError(f"delta: watermark {delta.watermark} is not a finite time")
    n = len(delta.seconds)
    if not delta.slo:
        if n or delta.total or delta.bad or delta.groups:
            raise DeltaError("heartbeat (empty SLO name) with counts")
        return
    if n == 0:
        raise DeltaError(f"delta for {delta.slo!r}: no buckets")
    if len(delta.total) != n or len(delta.bad) != n:
        raise DeltaError(f"delta for {delta.slo!r}: seconds, total and bad differ in length")
    if delta.groups is not None and len(delta.groups) != n:
        raise DeltaError(f"delta for {delta.slo!r}: groups and seconds differ in length")
    for t, b in zip(delta.total, delta.bad, strict=True):
        if t <= 0 or b < 0 or b > t:
            raise DeltaError(f"delta for {delta.slo!r}: impossible counts total={t} bad={b}")


def partition_keys(config: Config) -> dict[str, str]:
    """Each SLO's partition key (see the module docstring)."""
    parent = {slo.name: slo.name for slo in config.slos}
    order = {slo.name: i for i, slo in enumerate(config.slos)}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def join(x: str, y: str) -> None:
        a, b = root(x), root(y)
        if a != b:
            first, second = (a, b) if order[a] < order[b] else (b, a)
            parent[second] = first

    first_of_service: dict[str, str] = {}
    for slo in config.slos:
        if slo.service is not None:
            join(first_of_service.setdefault(slo.service, slo.name), slo.name)
        for member in slo.composite or ():
            if member.slo in parent:  # else the config checks report it
                join(slo.name, member.slo)
    service_of_family: dict[str, str] = {}
    for slo in config.slos:  # config order: a family's first service names it
        if slo.service is not None:
            service_of_family.setdefault(root(slo.name), slo.service)
    return {slo.name: service_of_family.get(r, r) for slo in config.slos for r in (root(slo.name),)}
