"""docker-compose.yml is a valid Compose file with every service the stack promises.

Validated by the Compose client without a Docker engine: ``docker compose config`` when the plugin
is there, else Debian's ``docker-compose`` 1.29 (``apt-get install -y docker-compose``; ``.ci/run``
installs it). Skips when neither is installed.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.test_deploy.promql import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"


def _compose() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip("no Compose client: neither `docker compose` nor `docker-compose` "
                "(apt-get install -y docker-compose; .ci/run does it)")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_compose(), "-f", str(COMPOSE_FILE), *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_compose_config_is_valid_with_every_profile():
    for profiles in ((), ("--profile", "gpu"), ("--profile", "demo"), ("--profile", "gpu", "--profile", "demo")):
        run = _run(*profiles, "config", "-q")
        assert run.returncode == 0, f"{profiles}: {run.stderr}"


def test_compose_declares_the_whole_stack():
    run = _run("--profile", "gpu", "--profile", "demo", "config", "--services")
    assert run.returncode == 0, run.stderr
    services = set(run.stdout.split())
    assert {"kafka", "kafka-init", "worker", "trainer", "trainer-gpu", "replay", "prometheus", "grafana"} <= services
    # The GPU trainer and the replay only run with their profiles.
    source = COMPOSE_FILE.read_text()
    assert 'profiles: ["gpu"]' in source and 'profiles: ["demo"]' in source


def test_compose_uses_official_kafka_in_kraft_mode_and_reserves_a_gpu_for_the_gpu_trainer():
    run = _run("--profile", "gpu", "config")
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "image: apache/kafka:" in text and "KAFKA_PROCESS_ROLES: broker,controller" in text
    assert "driver: nvidia" in text and "capabilities:" in text
    # Scalable workers: no fixed host port and no container_name on the worker.
    worker = text.split("\n  worker:\n", 1)[1].split("\n  ", 1)[0] if "\n  worker:\n" in text else ""
    assert "container_name" not in worker
