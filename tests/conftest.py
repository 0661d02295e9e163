"""Shared fixtures: a real Kafka-protocol broker for integration tests, fresh names per test.

The broker is the embedded Tansu (``stream.kafka.broker.EmbeddedBroker``) on a free
loopback port, started once per session; set ``STREAMREC_TEST_BROKER=host:port``
to use a broker that is already running instead.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ML100K = SHARED_DATA / "ml-100k" / "u.data"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap address of a running Kafka-protocol broker."""
    existing = os.environ.get("STREAMREC_TEST_BROKER")
    if existing:
        yield existing
        return
    from stream.kafka.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ml100k_path() -> Path:
    if not ML100K.is_file():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (it is never bundled; see shared/data/README.md)")
    return ML100K
