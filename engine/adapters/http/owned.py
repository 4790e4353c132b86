"""The HTTP an evaluate worker serves until the partitioned API takes over: `/healthz`,
`/readyz` and `/metrics` over the SLOs it owns.

`/metrics` has, per owned SLO (and group), `burnrate_slo_events_total`,
`burnrate_slo_bad_events_total` and `burnrate_alert_firing{severity}` (the names of the
single process's, engine.adapters.http.metrics), and per owned counts partition
`burnrate_evaluate_partition_offset` (the next counts offset it applies). Every SLO is
owned by one worker, so the workers' series partition the SLOs.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from engine.adapters.http.listen import parse_listen
from engine.core.evaluator import Evaluator

__all__ = ["OwnedHttp", "OwnedPartitions", "render_owned"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class OwnedPartitions(Protocol):
    @property
    def ready(self) -> asyncio.Event: ...

    def engines(self) -> list[Evaluator]: ...

    def offsets(self) -> dict[int, int]: ...


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_owned(engines: list[Evaluator], offsets: dict[int, int]) -> str:
    """The text-format body (see the module docstring)."""
    events: list[str] = []
    bad: list[str] = []
    firing: list[str] = []
    for ev in engines:
        counts = ev.counts()
        alerts = ev.alerts().firing
        used = ev.column_in_use()
        for c, name in enumerate(ev.names):
            if not used[c]:
                continue
            group = ev.group_of(c)
            labels = f'slo="{name}"' if group is None else f'slo="{name}",group="{_escape(group)}"'
            events.append(f"burnrate_slo_events_total{{{labels}}} {int(counts.events_total[c])}\n")
            bad.append(
                f"burnrate_slo_bad_events_total{{{labels}}} {int(counts.bad_events_total[c])}\n"
            )
            for j, sev in enumerate(ev.severities):
                firing.append(
                    f'burnrate_alert_firing{{{labels},severity="{sev}"}} {int(alerts[c, j])}\n'
                )
    parts = [
        "# HELP burnrate_slo_events_total Events counted per SLO.\n",
        "# TYPE burnrate_slo_events_total counter\n",
        *events,
        "# HELP burnrate_slo_bad_events_total Bad events counted per SLO.\n",
        "# TYPE burnrate_slo_bad_events_total counter\n",
        *bad,
        "# HELP burnrate_alert_firing 1 while the alert of the SLO and severity fires.\n",
        "# TYPE burnrate_alert_firing gauge\n",
        *firing,
        "# HELP burnrate_evaluate_partition_offset The next counts-topic offset each owned "
        "partition applies.\n",
        "# TYPE burnrate_evaluate_partition_offset gauge\n",
        *(
            f'burnrate_evaluate_partition_offset{{partition="{p}"}} {o}\n'
            for p, o in sorted(offsets.items())
        ),
    ]
    return "".join(parts)


class OwnedHttp:
    def __init__(self, worker: OwnedPartitions, listen: str) -> None:
        self.worker = worker
        self.listen = listen
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on `listen` (port 0: any free one, then in `port`). OSError when the
        address is taken."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = parse_listen(self.listen)
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.worker.ready.is_set():
            return web.json_response({"status": "ready"})
        return web.json_response(
            {"error": "not_ready", "message": "no partition assignment restored yet"}, status=503
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = render_owned(self.worker.engines(), self.worker.offsets())
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})
