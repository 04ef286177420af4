"""PostgreSQL and Kafka for Settle in three modes (see INFRA.md); the services only ever see a URL.

- external:   SETTLE_DATABASE_URL and SETTLE_KAFKA_BOOTSTRAP_SERVERS are set.
- containers: SETTLE_INFRA=containers and a reachable Docker engine (testcontainers).
- embedded:   the default. pgserver's PostgreSQL 16 from site-packages and librdkafka's mock cluster.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODES = ("external", "containers", "embedded")


class InfrastructureError(RuntimeError):
    """Infrastructure could not be started or reached; the message says what to do."""


@dataclass
class Infrastructure:
    mode: str
    database_url: str
    kafka_bootstrap_servers: str
    # Where pgbench and psql connect (a unix-socket directory for embedded PostgreSQL).
    pg_host: str = ""
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception as error:  # shutting down: report and keep closing the rest
                log.warning("closing infrastructure: %s", error)
        self._closers.clear()


def choose_mode(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    requested = env.get("SETTLE_INFRA", "").strip().lower()
    if requested and requested not in MODES:
        raise InfrastructureError(f"SETTLE_INFRA={requested!r} is not one of {', '.join(MODES)}")
    if requested:
        return requested
    if env.get("SETTLE_DATABASE_URL") or env.get("SETTLE_KAFKA_BOOTSTRAP_SERVERS"):
        return "external"
    return "embedded"


def start_infrastructure(mode: str, data_dir: Path) -> Infrastructure:
    """Starts (or connects to) PostgreSQL and Kafka. `data_dir` holds embedded PostgreSQL's files."""
    if mode == "external":
        return _external()
    if mode == "containers":
        return _containers()
    if mode == "embedded":
        return _embedded(data_dir)
    raise InfrastructureError(f"unknown infrastructure mode {mode!r}")


def _external() -> Infrastructure:
    database_url = os.environ.get("SETTLE_DATABASE_URL", "")
    bootstrap = os.environ.get("SETTLE_KAFKA_BOOTSTRAP_SERVERS", "")
    required = {"SETTLE_DATABASE_URL": database_url, "SETTLE_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise InfrastructureError(f"external mode needs {' and '.join(missing)}")
    return Infrastructure("external", database_url, bootstrap)


def _containers() -> Infrastructure:
    try:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        postgres = PostgresContainer("postgres:16-alpine", driver=None).start()
        kafka = KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft().start()
    except Exception as error:
        raise InfrastructureError(
            f"SETTLE_INFRA=containers needs a reachable Docker engine: {error}. "
            "Unset SETTLE_INFRA to use embedded infrastructure."
        ) from error
    infra = Infrastructure("containers", postgres.get_connection_url(), kafka.get_bootstrap_server())
    infra._closers += [postgres.stop, kafka.stop]
    return infra


def _embedded(data_dir: Path) -> Infrastructure:
    try:
        import pgserver
    except ImportError as error:
        raise InfrastructureError("embedded mode needs the pgserver package (pip install pgserver)") from error
    pg_dir = data_dir / "postgres"
    pg_dir.mkdir(parents=True, exist_ok=True)
    server = _start_pgserver(pgserver, pg_dir)
    broker = MockKafkaCluster()
    infra = Infrastructure("embedded", server.get_uri(), broker.bootstrap_servers, pg_host=str(pg_dir))
    infra._closers += [server.cleanup, broker.close]
    return infra


_PGSERVER_ATTEMPTS = 3


def _start_pgserver(pgserver: Any, pg_dir: Path) -> Any:
    """pgserver's server for `pg_dir`, trying again when one of its commands dies of a signal.

    As root, pgserver runs initdb and pg_ctl as another user, so the child switches user between fork and
    exec. Forked from a process whose gRPC threads are busy (a test run, `settle demo`), that child
    occasionally crashes before the exec (SIGSEGV); the next attempt, on a clean data directory, works.
    """
    for attempt in range(1, _PGSERVER_ATTEMPTS + 1):
        try:
            # cleanup_mode="stop": stop the server when we exit but keep the data directory (data persists).
            return pgserver.get_server(str(pg_dir), cleanup_mode="stop")
        except subprocess.CalledProcessError as error:
            if error.returncode >= 0 or attempt == _PGSERVER_ATTEMPTS:
                raise
            log.warning("embedded PostgreSQL: %s died of signal %d; trying again", error.cmd[0], -error.returncode)
            # pgserver registers the instance before initialising it: forget the broken one.
            pgserver.postgres_server.PostgresServer._instances.pop(pg_dir.expanduser().resolve(), None)
            if not (pg_dir / "PG_VERSION").exists():
                shutil.rmtree(pg_dir)
                pg_dir.mkdir()
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


class _AddressCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.address = ""
        self.found = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"bootstrap\.servers=(\S+)", record.getMessage())
        if match and not self.address:
            self.address = match.group(1).rstrip(",")
            self.found.set()


class MockKafkaCluster:
    """librdkafka's in-memory mock cluster: real TCP, real Kafka protocol; lives as long as this object.

    It auto-creates topics (4 partitions) and does not support the admin CreateTopics request.
    """

    def __init__(self, *, brokers: int = 1, start_timeout_s: float = 15.0) -> None:
        import confluent_kafka

        catcher = _AddressCatcher()
        logger = logging.getLogger(f"settle.mock_kafka.{id(self)}")
        logger.addHandler(catcher)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        self._producer: Any = confluent_kafka.Producer(
            {"test.mock.num.brokers": brokers, "debug": "mock", "logger": logger}
        )
        deadline = time.monotonic() + start_timeout_s
        while not catcher.found.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.2)
        if not catcher.address:
            raise InfrastructureError("the librdkafka mock cluster did not report its address")
        self.bootstrap_servers = catcher.address
        # Stop the debug logging once the address is known: it is chatty and nobody reads it.
        logger.removeHandler(catcher)
        logger.addHandler(logging.NullHandler())
        # librdkafka queues its log lines until poll(); drain them so they never pile up in memory.
        self._stopped = threading.Event()
        self._drainer = threading.Thread(target=self._drain_logs, name="mock-kafka-logs", daemon=True)
        self._drainer.start()

    def _drain_logs(self) -> None:
        while not self._stopped.wait(1.0):
            producer = self._producer
            if producer is not None:
                producer.poll(0)

    def close(self) -> None:
        self._stopped.set()
        self._drainer.join(timeout=5)
        self._producer = None
