"""`/v1/incidents` over real HTTP (aiohttp on port 0) on a real SQLite store in a
temporary directory, fed by the runtime's recorder: list and its filters, 400 naming
the parameter, get and 404, acknowledgement (its default `by`, idempotence, in the
store, of a closed incident), the routes without `incidents:`, the bearer token, the
audit line and the incident series in /metrics."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.incidents import NOT_CONFIGURED
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.core.changes import ChangeLog
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.runtime.incidents import IncidentRecorder, incident_recorder
from tests.unit.adapters.http.test_gates_api import call
from tests.unit.core.test_incidents import tr
from tests.unit.runtime.test_incidents import stored

T0 = 1_700_000_000.0
QUIET_S = 600.0


def config_text(db: Path, extra: str = "") -> str:
    return (
        "slos:\n"
        "  - {name: a1, service: a, sli: availability, objective: 99}\n"
        "  - {name: b1, service: b, sli: availability, objective: 99}\n"
        f"incidents: {{path: '{db}', quiet_period: 10m}}\n" + extra
    )


class Engine:
    """An evaluator, its recorder on a SQLite store and the HTTP server over them."""

    def __init__(self, text: str) -> None:
        self.evaluator = Evaluator(parse_config(text))
        self.evaluator.advance(T0 - 100)  # the event-time clock starts
        self.metrics = EngineMetrics(self.evaluator, lambda: None, lambda: T0)
        recorder = incident_recorder(
            self.evaluator.config, self.evaluator, ChangeLog(3600, 100), self.metrics, lambda: T0
        )
        assert recorder is not None
        self.recorder: IncidentRecorder = recorder
        self.server = HttpServer("127.0.0.1:0", self.metrics, lambda: None, incidents=self.recorder)

    async def __aenter__(self) -> Engine:
        await self.recorder.start()
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()
        await self.recorder.close(5.0)

    def at(self, t: float) -> None:
        """Evaluated to `t` (a tick boundary; no events), then the recorder's tick."""
        self.evaluator.advance(t + 0.5)  # the tick ending at t is evaluated once t has passed
        assert self.evaluator.evaluated_at_s == t
        self.recorder.tick()

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


def paged(engine: Engine) -> tuple[str, str]:
    """a pages at T0 + 10, b at T0 + 20; b resolves at T0 + 30. Their ids."""
    engine.recorder.transitions([tr("a1", "page", "firing", T0 + 10)])
    engine.recorder.transitions([tr("b1", "page", "firing", T0 + 20)])
    engine.recorder.transitions([tr("b1", "page", "resolved", T0 + 30)])
    ids = [i.id for i in engine.recorder.book.open_incidents()]
    assert len(ids) == 2
    return ids[0], ids[1]


async def listed(session: aiohttp.ClientSession, url: str) -> list[str]:
    status, body = await call(session, "GET", url)
    assert status == 200, body
    return [i["id"] for i in body["incidents"]]


@pytest.mark.asyncio
async def test_list_filters_newest_first_and_get_answers_the_view(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with Engine(config_text(tmp_path / "i.db")) as engine:
        assert await listed(session, engine.url("/v1/incidents")) == []
        a, b = paged(engine)
        # answered at once, written or not
        assert await listed(session, engine.url("/v1/incidents")) == [b, a]
        assert await engine.recorder.written(5.0)
        engine.at(T0 + 30 + QUIET_S)  # b closes
        assert await listed(session, engine.url("/v1/incidents")) == [b, a]
        assert await listed(session, engine.url("/v1/incidents?state=open")) == [a]
        assert await listed(session, engine.url("/v1/incidents?state=closed")) == [b]
        assert await listed(session, engine.url("/v1/incidents?service=a")) == [a]
        assert await listed(session, engine.url("/v1/incidents?service=gone")) == []
        assert await listed(session, engine.url("/v1/incidents?limit=1")) == [b]

        status, view = await call(session, "GET", engine.url(f"/v1/incidents/{b}"))
        assert status == 200
        assert view["state"] == "closed"
        assert (view["opened_at"], view["resolved_at"]) == (T0 + 20, T0 + 30)
        assert view["closed_at"] == T0 + 30 + QUIET_S
        assert view["time_to_resolve_s"] == 10.0
        assert view["time_to_detect_s"] is None  # no events: no onset
        assert view["time_to_acknowledge_s"] is None
        assert view["slos"] == ["b1"]
        assert [e["kind"] for e in view["timeline"]] == [
            "opened",
            "alert_fired",
            "alert_resolved",
            "closed",
        ]
        assert view["alerts"] == [
            {
                "slo": "b1",
                "group": None,
                "severity": "page",
                "kind": "burn",
                "alert_id": "page",
                "fired_at": T0 + 20,
                "resolved_at": T0 + 30,
                "fired_count": 1,
            }
        ]
        assert view["timeline"][0] == {
            "at": T0 + 20,
            "kind": "opened",
            "text": "opened by page b1 firing",
            "data": {},
        }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("state=gone", "state: must be open or closed, got 'gone'"),
        ("limit=0", "limit: must be a whole number from 1 to 1000"),
        ("limit=1001", "limit: must be a whole number from 1 to 1000"),
        ("limit=x", "limit: must be a whole number from 1 to 1000"),
        ("service=", "service: must be 1 to 256 characters"),
        ("sevrice=a", "sevrice: unknown parameter"),
    ],
)
async def test_a_bad_parameter_is_400_naming_it(
    tmp_path: Path, session: aiohttp.ClientSession, query: str, named: str
) -> None:
    async with Engine(config_text(tmp_path / "i.db")) as engine:
        status, body = await call(session, "GET", engine.url(f"/v1/incidents?{query}"))
        assert status == 400
        assert body["errors"] == [named]


@pytest.mark.asyncio
async def test_an_unknown_id_is_404_with_the_id(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with Engine(config_text(tmp_path / "i.db")) as engine:
        for method, path in (("GET", ""), ("POST", "/acknowledge")):
            status, body = await call(session, method, engine.url(f"/v1/incidents/nope{path}"))
            assert (status, body) == (404, {"error": "no incident has that id", "id": "nope"})


@pytest.mark.asyncio
async def test_acknowledge_is_idempotent_kept_in_the_store_and_audited(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "i.db"
    async with Engine(config_text(db)) as engine:
        a, b = paged(engine)
        engine.at(T0 + 100)
        with caplog.at_level(logging.INFO, "burnrate.adapters.http.incidents"):
            status, view = await call(
                session, "POST", engine.url(f"/v1/incidents/{a}/acknowledge"), {"by": "alice"}
            )
        assert status == 200
        assert (view["acknowledged_by"], view["acknowledged_at"]) == ("alice", T0 + 100)
        assert view["time_to_acknowledge_s"] == 90.0
        assert view["timeline"][-1]["kind"] == "acknowledged"
        [line] = [
            r
            for r in caplog.records
            if r.name == "burnrate.adapters.http.incidents" and getattr(r, "data", {}).get("event")
        ]
        assert line.data["event"] == "incident_acknowledged"  # type: ignore[attr-defined]
        assert line.data["remote"] == "127.0.0.1"  # type: ignore[attr-defined]

        engine.at(T0 + 200)
        status, again = await call(
            session, "POST", engine.url(f"/v1/incidents/{a}/acknowledge"), {"by": "bob"}
        )
        assert (status, again) == (200, view)  # the first stands
        # no body: the client's address
        status, view_b = await call(session, "POST", engine.url(f"/v1/incidents/{b}/acknowledge"))
        assert (status, view_b["acknowledged_by"]) == (200, "127.0.0.1")

        # a closed incident, no longer in the book, is acknowledged in the store
        engine.at(T0 + 30 + QUIET_S)
        assert await engine.recorder.written(5.0)
        assert engine.recorder.book.get(b) is None

    kept = {i.id: i for i in await stored(db)}  # what the file holds after the engine stopped
    assert (kept[a].state, kept[a].acknowledged_by) == ("open", "alice")
    assert (kept[b].state, kept[b].acknowledged_by) == ("closed", "127.0.0.1")


@pytest.mark.asyncio
async def test_acknowledging_a_closed_incident_writes_it_to_the_store(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with Engine(config_text(tmp_path / "i.db")) as engine:
        _, b = paged(engine)
        engine.at(T0 + 30 + QUIET_S)
        assert await engine.recorder.written(5.0)
        status, view = await call(
            session, "POST", engine.url(f"/v1/incidents/{b}/acknowledge"), {"by": "carol"}
        )
        assert status == 200
        assert (view["state"], view["acknowledged_by"]) == ("closed", "carol")
        stored = await engine.recorder.store.get(b)
        assert stored is not None
        assert stored.acknowledged_by == "carol"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", "$: Input data was truncated"),
        (b'{"by": 5}', "Expected `str | null`, got `int` - at `$.by`"),
        (b'{"who": "x"}', "$: Object contains unknown field `who`"),
        (b'{"by": ""}', "$.by: must be 1 to 200 characters"),
    ],
)
async def test_a_bad_acknowledgement_body_is_400(
    tmp_path: Path, session: aiohttp.ClientSession, body: bytes, error: str
) -> None:
    async with Engine(config_text(tmp_path / "i.db")) as engine:
        a, _ = paged(engine)
        url = engine.url(f"/v1/incidents/{a}/acknowledge")
        async with session.post(url, data=body) as resp:
            assert resp.status == 400
            assert error in (await resp.json())["error"]
        assert engine.recorder.book.get(a).acknowledged_at is None  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_without_incidents_the_routes_say_so(session: aiohttp.ClientSession) -> None:
    ev = Evaluator(parse_config(config_text(Path("unused.db")).split("incidents:")[0]))
    metrics = EngineMetrics(ev, lambda: None, lambda: T0)
    server = HttpServer("127.0.0.1:0", metrics, lambda: None)
    await server.start()
    try:
        for method, path in (
            ("GET", "/v1/incidents"),
            ("GET", "/v1/incidents/x"),
            ("POST", "/v1/incidents/x/acknowledge"),
        ):
            status, body = await call(session, method, f"{server.url}{path}")
            assert (status, body) == (404, {"error": NOT_CONFIGURED}), path
        assert b"burnrate_incident" not in metrics.render()
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_the_routes_need_the_bearer_token_when_one_is_configured(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    token = f"tok-{secrets.token_urlsafe(24)}"
    (tmp_path / "token").write_text(token)
    extra = f"http: {{listen: 127.0.0.1:0, auth_token_file: '{tmp_path / 'token'}'}}\n"
    async with Engine(config_text(tmp_path / "i.db", extra)) as engine:
        a, _ = paged(engine)
        for method, path in (("GET", ""), ("GET", f"/{a}"), ("POST", f"/{a}/acknowledge")):
            status, _ = await call(session, method, engine.url(f"/v1/incidents{path}"))
            assert status == 401
        status, body = await call(session, "GET", engine.url("/v1/incidents"), token=token)
        assert status == 200
        assert len(body["incidents"]) == 2
        assert engine.recorder.book.get(a).acknowledged_at is None  # type: ignore[union-attr]


def samples(text: str) -> Callable[[str], dict[tuple[tuple[str, str], ...], float]]:
    families = list(text_string_to_metric_families(text))

    def of(name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {
            tuple(sorted(s.labels.items())): s.value
            for f in families
            for s in f.samples
            if s.name == name
        }

    return of


@pytest.mark.asyncio
async def test_metrics_count_open_incidents_and_time_to_detect(tmp_path: Path) -> None:
    async with Engine(config_text(tmp_path / "i.db")) as engine:
        of = samples(generate_latest(engine.metrics.registry).decode())
        assert of("burnrate_incidents_open") == {(("service", "a"),): 0, (("service", "b"),): 0}
        paged(engine)  # no events: no onset, nothing observed
        engine.at(T0 + 30 + QUIET_S)  # b closes
        of = samples(generate_latest(engine.metrics.registry).decode())
        assert of("burnrate_incidents_open") == {(("service", "a"),): 1, (("service", "b"),): 0}
        assert of("burnrate_incident_time_to_detect_seconds_count") == {(): 0}

        # b fails from 45 s before its next page: an onset, observed as it opens
        t = T0 + 2 * QUIET_S
        ev = engine.evaluator
        failing = [Event(service="b", ts=t - 45 + i, status=500) for i in range(45)]
        ev.ingest(ev.classifier.columns(failing))
        engine.at(t)
        engine.recorder.transitions([tr("b1", "page", "firing", t)])
        [b] = [i for i in engine.recorder.book.open_incidents() if i.service == "b"]
        assert b.onset_at is not None
        assert t - 60 <= b.onset_at <= t - 40
        of = samples(generate_latest(engine.metrics.registry).decode())
        assert of("burnrate_incident_time_to_detect_seconds_count") == {(): 1}
        assert of("burnrate_incident_time_to_detect_seconds_sum") == {(): t - b.onset_at}
        buckets = of("burnrate_incident_time_to_detect_seconds_bucket")
        assert (buckets[(("le", "30.0"),)], buckets[(("le", "60.0"),)]) == (0, 1)
