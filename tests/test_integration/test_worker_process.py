"""A worker process always stops on SIGTERM, even when its broker has gone away."""
from __future__ import annotations

import time

import pytest

from stream.cli.processes import SHUTDOWN_GRACE_S
from stream.kafka.broker import EmbeddedBroker, free_port
from stream.settings import Settings
from tests.test_integration.conftest import worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_sigterm_ends_the_worker_within_the_grace_period_after_the_broker_died(tmp_path):
    broker = EmbeddedBroker().start()
    settings = Settings.of(bootstrap_servers=broker.bootstrap, metrics_port=free_port(), data_dir=str(tmp_path))
    try:
        with worker_process(settings, tmp_path / "worker.log") as process:
            broker.stop()
            time.sleep(1.0)
            started = time.monotonic()
            process.terminate()
            process.wait(SHUTDOWN_GRACE_S + 10)
            assert time.monotonic() - started <= SHUTDOWN_GRACE_S + 5
    finally:
        broker.stop()
