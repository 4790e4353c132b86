"""What the HTTP sinks share: a bounded queue, one worker task, POSTs with retries, counts.

Why a queue: the runtime's deliver task must never wait on a receiver, so `deliver`
only puts the transition in the sink's queue (it never suspends) and the sink's worker
does the network I/O. One worker per URL keeps each receiver's transitions in order (a
resolve never overtakes its firing) and keeps a slow receiver from delaying the others.

Retries. A timeout, a connection error, 429 and 5xx are retried with exponential
backoff and full jitter (each delay uniform in [0, min(max, initial * 2**attempt)]),
or after the response's Retry-After (seconds or an HTTP-date) when it has one. Both are
capped (`max_backoff_s`, `max_retry_after_s`: 5 min by default) because alerts are
time-critical and the cap bounds how stale a delivery can get. Retries go on until the
receiver takes the request or the sink is closed. Nothing is dropped quietly: a 4xx
other than 429 (the receiver refuses this request and would refuse it again), 410 (the
receiver says it is gone), a full queue and whatever is left at close are each logged
at ERROR, and counted (except the last: the process is exiting).

Across restarts (see `pending`): `delivery_state()` gives what is still undelivered
(also after close) and which alerts the receiver was told about; `restore()` takes it
back in a new process, so the runtime can keep both in the state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import ClassVar, Final

import aiohttp
from yarl import URL

from engine import __version__
from engine.adapters.alerts.payloads import rfc3339
from engine.adapters.alerts.pending import QueuedJob, SinkState, sink_identity
from engine.adapters.alerts.receivers import check_url
from engine.adapters.alerts.routing import takes
from engine.core.config import Escalations, Slo
from engine.core.evaluator import AlertKey, Transition
from engine.errors import SinkError

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "OUTCOMES",
    "USER_AGENT",
    "Clock",
    "DeliveryError",
    "HttpSink",
    "Job",
    "RetryPolicy",
    "check_url",
    "redact_url",
    "retry_after_s",
]

log = logging.getLogger("burnrate.adapters.alerts.http_sink")

Clock = Callable[[], float]
"""Wall-clock time in epoch seconds (`time.time`); injected so tests control it."""
OUTCOMES: Final = ("delivered", "retried", "failed", "dropped_queue_full")
"""Outcome label values of `burnrate_webhook_deliveries_total`, all present from start."""
DEFAULT_QUEUE_SIZE: Final = 1000
USER_AGENT: Final = f"burnrate/{__version__}"
# RFC 9110 says ASCII digits (not \d, which takes any script's); fractions tolerated
_DELAY_SECONDS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")
_SNIPPET_CHARS = 300


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; Retry-After honoured up to a cap."""

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError(
                "need 0 < initial_backoff_s <= max_backoff_s, got "
                f"{self.initial_backoff_s} and {self.max_backoff_s}"
            )
        if not self.max_retry_after_s > 0:
            raise ValueError(f"max_retry_after_s must be > 0, got {self.max_retry_after_s}")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """The delay after failed attempt number `attempt` (0-based)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** min(attempt, 62))
        return rng.uniform(0.0, ceiling)


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """Seconds to wait per a Retry-After header (delay-seconds or HTTP-date), None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)


def redact_url(url: str) -> str:
    """`scheme://host:port` of a URL: safe for logs and metric labels.

    Webhook URLs often carry their credential in the path (`/services/T0/B0/XYZ`), the
    query or the user info, so none of those are ever shown.
    """
    try:
        return str(URL(url).origin())
    except ValueError:
        return "<invalid url>"


@dataclass(slots=True)
class Job:
    """A queued transition, its SLO's config, and the transition that fired its alert."""

    tr: Transition
    slo: Slo
    fired: Transition | None

    def describe(self) -> str:
        tr = self.tr
        return f"{tr.slo}/{tr.alert_id} {tr.state} at {rfc3339(tr.at)}"


class DeliveryError(SinkError):
    """One attempt failed; `retry_after_s` is the receiver's Retry-After, if it gave one."""

    def __init__(
        self, message: str, *, retriable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.retry_after_s = retry_after_s


class HttpSink:
    """Base of the webhook and Alertmanager sinks: queue, worker lifecycle, POST, counts."""

    kind: ClassVar[str] = "http"

    def __init__(
        self,
        url: str,
        slos: Mapping[str, Slo],
        *,
        clock: Clock,
        timeout_s: float,
        queue_size: int,
        retry: RetryPolicy,
        rng: random.Random | None,
        receiver: str | None = None,
        name: str | None = None,
        escalations: Escalations = "named",
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.url = url
        self.receiver = receiver or redact_url(url)
        """The `receiver` label of this sink's counts (and its name in logs)."""
        self.name = name
        """The configured receiver's `name` (how the config refers to it), if it has one."""
        self.escalations: Escalations = escalations
        """Which escalations it hears: those naming it, or all (engine.adapters.alerts.routing)."""
        self.slos = dict(slos)
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry = retry
        self._rng = rng or random.Random()
        self._queue: _JobQueue = _JobQueue(maxsize=queue_size)
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._fired: dict[AlertKey, Transition] = {}
        self._current: list[Job] = []
        self._unsent: list[Job] = []
        """What close() found undelivered: kept for `delivery_state`."""
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.receiver!r})"

    # -- the Sink protocol -----------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session and start the worker (call once, inside the event loop)."""
        if self._worker is not None or self._closed:
            raise RuntimeError(f"{self!r} was already started")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": USER_AGENT},
        )
        self._worker = asyncio.create_task(self._run(), name=f"{self.kind} sink {self.receiver}")
        self._worker.add_done_callback(self._worker_done)

    async def deliver(self, tr: Transition) -> None:
        """Queue `tr` for delivery. Never suspends; a full queue drops it, loudly."""
        self.enqueue(tr)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking transitions, let the worker finish the queue for up to `timeout_s`,
        then stop it, log every transition left undelivered and close the session."""
        if self._closed:
            return
        self._closed = True
        worker = self._worker
        if worker is not None and not worker.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._queue.join()
            worker.cancel()
            await asyncio.wait([worker])
        left = [*self._current, *_drain(self._queue)]
        self._current = []
        self._unsent = left
        if left:
            log.error(
                "%s: %d alert transitions not delivered before shutdown: %s",
                self,
                len(left),
                "; ".join(job.describe() for job in left),
            )
        self._on_close()
        if self._session is not None:
            await self._session.close()

    def stats(self) -> dict[tuple[str, str], int]:
        """Deliveries by outcome, keyed (receiver, outcome); every outcome is present."""
        return {(self.receiver, outcome): n for outcome, n in self._counts.items()}

    # -- queueing --------------------------------------------------------------------

    def enqueue(self, tr: Transition) -> None:
        """`deliver` without the coroutine: queue `tr` or log (and count) why not."""
        if self._closed:
            log.error("%s is closed; %s/%s %s not delivered", self, tr.slo, tr.severity, tr.state)
            return
        if not self.accepts(tr):
            return
        slo = self.slos.get(tr.slo)
        if slo is None:
            self._counts["failed"] += 1
            log.error("%s: transition for unknown SLO %r dropped", self, tr.slo)
            return
        key = tr.alert_key
        before = self._fired.get(key)
        if tr.state == "firing":
            self._fired[key] = tr
            fired: Transition | None = tr
        else:
            fired = self._fired.pop(key, None)
            if fired is None:
                log.warning(
                    "%s: %s/%s resolved but its firing was not seen (restart?); its labels "
                    "name the windows of the resolved row, which may differ",
                    self,
                    tr.slo,
                    tr.severity,
                )
        job = Job(tr, slo, fired)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            if before is None:  # as if never taken: a dropped firing is not one seen
                self._fired.pop(key, None)
            else:
                self._fired[key] = before
            self._counts["dropped_queue_full"] += 1
            log.error(
                "%s: delivery queue full (%d transitions wait for a slow or failing "
                "receiver); DROPPED %s",
                self,
                self._queue.maxsize,
                job.describe(),
            )

    @property
    def pending(self) -> int:
        """Transitions queued or being delivered."""
        return self._queue.qsize() + len(self._current)

    # -- delivery state across restarts (see engine.adapters.alerts.pending) ----------

    @property
    def identity(self) -> str:
        return sink_identity(self.kind, self.url)

    def delivery_state(self) -> SinkState:
        """What this sink has not delivered, oldest first, and what its receiver knows."""
        jobs = self._unsent if self._closed else [*self._current, *self._queue.items()]
        return SinkState(
            queued=[QueuedJob(tr=job.tr, fired=job.fired) for job in jobs],
            announced=self._announced_state(),
        )

    def restore(
        self,
        state: SinkState | None,
        waiting: Sequence[Transition],
        firing: Sequence[Transition],
    ) -> int:
        """See `pending.KeepsDeliveries.restore`."""
        if state is not None:
            wanted = {tr.alert_key for tr in firing}
            wanted |= {job.tr.alert_key for job in state.queued}
            wanted |= {tr.alert_key for tr in waiting}
            self._restore_announced([tr for tr in state.announced if tr.alert_key in wanted])
            for queued in state.queued:
                self._put_restored(queued)
        for tr in waiting:
            self.enqueue(tr)
        announced = 0
        for tr in firing:
            if tr.alert_key not in self._fired and self.accepts(tr):
                self.enqueue(tr)
                announced += 1
        if announced:
            log.info(
                "%s: announcing %d firing alerts its receiver may not know of",
                self,
                announced,
            )
        return self.pending

    def _put_restored(self, queued: QueuedJob) -> None:
        tr = queued.tr
        if not self.accepts(tr):  # the config no longer sends this severity here
            return
        slo = self.slos.get(tr.slo)
        if slo is None:
            log.error("%s: undelivered transition of unknown SLO %r dropped", self, tr.slo)
            return
        key = tr.alert_key
        if tr.state == "firing":
            self._fired[key] = tr
        else:
            self._fired.pop(key, None)
        try:
            self._queue.put_nowait(Job(tr, slo, queued.fired))
        except asyncio.QueueFull:
            self._counts["dropped_queue_full"] += 1
            log.error("%s: delivery queue full; DROPPED %s", self, Job(tr, slo, None).describe())

    # -- for subclasses --------------------------------------------------------------

    def accepts(self, tr: Transition) -> bool:
        """Whether this sink's receiver hears about `tr` at all (by configuration: a
        transition it does not accept is not a drop): see engine.adapters.alerts.routing."""
        return takes(tr, self.name, self.escalations)

    async def _run(self) -> None:
        raise NotImplementedError

    def _on_close(self) -> None:
        """Hook: log what the subclass leaves behind at close."""

    def _announced_state(self) -> list[Transition]:
        """Hook: firing transitions of the alerts the receiver was told about."""
        return []

    def _restore_announced(self, announced: list[Transition]) -> None:
        """Hook: take back `_announced_state()` of an earlier process."""

    async def post_until_done(
        self, build: Callable[[], tuple[bytes, dict[str, str]]], what: str
    ) -> bool:
        """POST `build()` (rebuilt per attempt) until the receiver takes it (True) or
        refuses it for good (False); retriable failures are retried without end."""
        attempt = 0
        while True:
            body, headers = build()
            try:
                await self._post_once(body, headers)
            except DeliveryError as exc:
                if not exc.retriable:
                    self._counts["failed"] += 1
                    log.error("%s refused %s: %s; dropped", self, what, exc)
                    return False
                if exc.retry_after_s is None:
                    delay_s = self.retry.backoff_s(attempt, self._rng)
                else:
                    delay_s = min(exc.retry_after_s, self.retry.max_retry_after_s)
                self._counts["retried"] += 1
                log.warning(
                    "%s: attempt %d to deliver %s failed (%s); retrying in %.2fs",
                    self,
                    attempt + 1,
                    what,
                    exc,
                    delay_s,
                )
                await asyncio.sleep(delay_s)
                attempt += 1
            else:
                self._counts["delivered"] += 1
                if attempt:
                    log.info("%s: delivered %s at attempt %d", self, what, attempt + 1)
                return True

    async def _post_once(self, body: bytes, headers: Mapping[str, str]) -> None:
        if self._session is None:
            raise RuntimeError(f"{self!r} is not started")
        try:
            async with self._session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                snippet = (await resp.read())[:_SNIPPET_CHARS].decode("utf-8", "replace").strip()
        except TimeoutError:
            raise DeliveryError(f"no response within {self.timeout_s:g}s", retriable=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retriable=True) from None
        if 200 <= status < 300:
            return
        text = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
        if status == 429 or status >= 500:
            wait_s = retry_after_s(retry_after, self.clock())
            raise DeliveryError(text, retriable=True, retry_after_s=wait_s)
        if status == 410:
            text += " (the receiver says it is gone: giving up on this delivery)"
        elif 300 <= status < 400:
            text += " (redirects are not followed: configure the final URL)"
        raise DeliveryError(text, retriable=False)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "%s: worker stopped unexpectedly; transitions now queue up undelivered",
                self,
                exc_info=exc,
            )


class _JobQueue(asyncio.Queue[Job]):
    """An asyncio.Queue whose waiting items can be read without taking them."""

    def _init(self, maxsize: int) -> None:
        # asyncio.Queue counts what is in `_queue` (qsize, empty): keep the items there
        self._queue: deque[Job] = deque()

    def _put(self, item: Job) -> None:
        self._queue.append(item)

    def _get(self) -> Job:
        return self._queue.popleft()

    def items(self) -> list[Job]:
        return list(self._queue)


def _drain(queue: asyncio.Queue[Job]) -> list[Job]:
    out: list[Job] = []
    while True:
        try:
            out.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            return out
