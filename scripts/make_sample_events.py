"""Write configs/sample-events.jsonl.gz: three hours of traffic with one checkout outage.

Deterministic (seeded). The outage (30% of checkout orders fail with 503/UNAVAILABLE for
15 minutes, 90 minutes in) is enough to page on `checkout-availability` and resolve;
run `burnrate replay --config configs/example.yaml --events configs/sample-events.jsonl.gz`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import msgspec
import numpy as np

START = 1_767_225_600  # 2026-01-01T00:00:00Z
HOURS = 3
OUTAGE = (90 * 60, 105 * 60)


def main() -> None:
    rng = np.random.default_rng(20260101)
    enc = msgspec.json.Encoder()
    out = Path(__file__).resolve().parent.parent / "configs" / "sample-events.jsonl.gz"
    with gzip.open(out, "wb", compresslevel=9) as f:
        for sec in range(HOURS * 3600):
            events: list[dict[str, object]] = []
            ts = START + sec
            in_outage = OUTAGE[0] <= sec < OUTAGE[1]
            for _ in range(rng.poisson(4)):
                fail = rng.random() < (0.30 if in_outage else 0.0001)
                events.append(
                    {
                        "service": "checkout",
                        "operation": "POST /orders",
                        "ts": round(ts + rng.random(), 3),
                        "status": 503 if fail else int(rng.choice([200, 201, 400, 404])),
                        "latency_ms": round(float(rng.lognormal(4.5, 0.35)), 1),
                    }
                )
            for _ in range(rng.poisson(2)):
                fail = rng.random() < 0.001
                events.append(
                    {
                        "service": "catalog",
                        "operation": f"GET /products/{int(rng.integers(1, 500))}",
                        "ts": round(ts + rng.random(), 3),
                        "status": 500 if fail else 200,
                        "latency_ms": round(float(rng.lognormal(3.5, 0.4)), 1),
                    }
                )
            if rng.random() < 0.5:
                fail = rng.random() < (0.2 if in_outage else 0.00005)
                events.append(
                    {
                        "service": "ledger",
                        "operation": "ledger.Post",
                        "ts": round(ts + rng.random(), 3),
                        "status": "UNAVAILABLE" if fail else "OK",
                        "latency_ms": round(float(rng.lognormal(2.5, 0.3)), 1),
                    }
                )
            if events:
                f.write(enc.encode(events) + b"\n")
        # A few records that must be rejected, to show the counters.
        f.write(b'{"service": "checkout", "ts": "yesterday"}\n')
        f.write(b'{"operation": "GET /"}\n')
        f.write(b"not json at all\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
