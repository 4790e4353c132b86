"""`burnrate backtest` of several policies in one pass, against one replay of the same file.

    python -m benchmarks.bench_backtest [--days 4] [--slos 20] [--policies 4] [--repeat 3]

A generated recording of `--days` days: `--slos` services with one availability SLO
each, a line every 10 s per service with a `count` of 10 to 200 requests (sparse,
count-weighted traffic), and every service failing 15 % of its requests for an hour once
a day at its own hour. The baseline is `replay` of the file with the config (decode,
count, evaluate every 10 s tick, in this process, best of `--repeat`); the measure is
`backtest` of the config's policy and `--policies - 1` candidates with other rows (one
of them with its own `for`, evaluated as copies in the same evaluator) over the same file. The goal
(backtest of 4 policies <= 1.5x one replay) is printed beside the figures; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import gzip
import random
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.common import best_of, report
from engine.core.backtest import Candidate, combine
from engine.core.config import PolicyRow, parse_config
from engine.runtime.backtest import backtest
from engine.runtime.replay import replay

START = 1_767_225_600.0
GOAL_RATIO = 1.5
CANDIDATE_ROWS = [
    [PolicyRow(severity="page", long="5m", short="1m", burn_rate=14.4)],
    [
        PolicyRow(severity="page", long="1h", short="5m", burn_rate=10),
        PolicyRow(severity="ticket", long="6h", short="30m", burn_rate=3),
    ],
    [PolicyRow(severity="page", long="30m", short="2m", burn_rate=8)],
    [PolicyRow(severity="ticket", long="2h", short="10m", burn_rate=4)],
]


def config_text(slos: int) -> str:
    lines = ["slos:"]
    for i in range(slos):
        lines.append(f"  - {{name: svc-{i}, service: svc-{i}, sli: availability, objective: 99.5}}")
    return "\n".join(lines) + "\nevaluation: {tick: 10s}\n"


def write_recording(path: Path, days: int, slos: int) -> tuple[int, int]:
    """The file; returns (lines, events)."""
    rng = random.Random(5)
    enc = msgspec.json.Encoder()
    lines = events = 0
    with gzip.open(path, "wb", compresslevel=1) as f:
        for k in range(days * 8640):
            t = START + 10 * (k + 1)
            hour = int((t - START) // 3600) % 24
            batch = []
            for i in range(slos):
                n = rng.randint(10, 200)
                bad = round(n * 0.15) if hour == i % 24 else rng.choice([0, 0, 0, 1])
                batch.append({"service": f"svc-{i}", "ts": t, "count": n - bad})
                if bad:
                    batch.append({"service": f"svc-{i}", "ts": t, "status": 500, "count": bad})
                events += n
            f.write(enc.encode(batch) + b"\n")
            lines += 1
    return lines, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--slos", type=int, default=20)
    parser.add_argument("--policies", type=int, default=4, help="the config's and candidates")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cfg = parse_config(config_text(args.slos))
    slower = msgspec.structs.replace(cfg.evaluation, for_="2m")
    candidates = [Candidate("config", None, cfg.evaluation)] + [
        Candidate(
            f"c{k}",
            tuple(CANDIDATE_ROWS[k % len(CANDIDATE_ROWS)]),
            slower if k == 0 else cfg.evaluation,
        )
        for k in range(args.policies - 1)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recording.jsonl.gz"
        lines, events = write_recording(path, args.days, args.slos)
        print(f"recording: {args.days} days, {args.slos} SLOs, {lines:,} lines, {events:,} events")
        replay_s = best_of(lambda: replay(cfg, path, lambda _: None), args.repeat)
        result = backtest(cfg, candidates, path)
        backtest_s = best_of(lambda: backtest(cfg, candidates, path), args.repeat)
    evaluators = len(combine(cfg, candidates))
    episodes = sum(len(r.episodes) for r in result.slos)
    rows: list[dict[str, Any]] = [
        {
            "measure": f"backtest of {args.policies} policies, one pass",
            "baseline": "replay of the config, same file, same run",
            "days": args.days,
            "slos": args.slos,
            "events": events,
            "ticks": args.days * 8640,
            "evaluators": evaluators,
            "baseline_s": replay_s,
            "burnrate_s": backtest_s,
            "ratio": backtest_s / replay_s,
            "episodes": episodes,
            "goal": f"<= {GOAL_RATIO}x one replay",
        }
    ]
    report("bench_backtest", rows)


if __name__ == "__main__":
    main()
