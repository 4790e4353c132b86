"""Where `burnrate run` spends its time: cProfile over consuming single-event records.

    python -m benchmarks.profile_kafka [--events 300000] [--batch 1] [--top 14]
                                       [--sort tottime]

Starts the embedded broker, pre-produces the events of `bench_kafka` (its services and
config, so every event is counted by two SLOs), runs the service (Runtime, with the
service's GC settings) under cProfile until every record is consumed, and prints the
functions with the most own time (`--sort cumulative`: with their callees).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from benchmarks.bench_kafka import SERVICES, bench_config
from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic
from engine.loadgen.publish import produce
from engine.loadgen.spec import LoadSpec
from engine.runtime.service import Runtime
from engine.runtime.tuning import tune_gc


async def profile(events: int, batch: int, top: int, sort: str) -> None:
    with EmbeddedBroker() as broker:
        await create_topic(broker.bootstrap_servers, "profile", 3)
        spec = LoadSpec(
            rate_per_s=10_000,
            duration_s=events / 10_000,
            services=SERVICES,
        )
        await produce(broker.bootstrap_servers, "profile", spec, batch=batch, realtime=False)
        runtime = Runtime(
            bench_config(broker.bootstrap_servers, "profile"), sinks=[], listen="127.0.0.1:0"
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await runtime.started.wait()
        prof = cProfile.Profile()
        prof.enable()
        start = time.perf_counter()
        while runtime.source.records_consumed < -(-events // batch):  # noqa: ASYNC110 (polls a counter)
            await asyncio.sleep(0.05)
        prof.disable()
        print(f"consumed {events:,} events in {time.perf_counter() - start:.2f} s (profiled)")
        stop.set()
        await task
        pstats.Stats(prof).sort_stats(sort).print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description="profile the service's consumption")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1, help="events per JSON record")
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--sort", default="tottime", help="a pstats sort key, e.g. cumulative")
    args = parser.parse_args()
    tune_gc()
    asyncio.run(profile(args.events, args.batch, args.top, args.sort))


if __name__ == "__main__":
    main()
