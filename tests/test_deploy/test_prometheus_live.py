"""Every dashboard query and every rule returns data from a real Prometheus scraping a running demo.

``streamrec demo --trainer --hold`` runs the broker, a worker (with the learned blend and the tuner:
``STREAMREC_BLEND=default``, ``STREAMREC_TUNER=1``), the trainer (tiny encoder, CPU, refreshing every
few seconds) and serves the demo's own metrics, and starts a ``streamrec tuner`` that searches the engine's
whole config on the same stream (the bandits tune inside the self-tuned engine); a real Prometheus (Debian's, ``apt-get install -y
prometheus``) scrapes all four every second with ``deploy/prometheus/rules.yml`` loaded. After the
replay, a trickle of events keeps the rates non-zero, then every expression is evaluated through
``/api/v1/query``:

- dashboard queries, with Grafana's ``$__rate_interval`` and friends replaced by concrete windows;
- recording rules as they are;
- alerts without their thresholds: each ``<expression> <comparison> <number>`` clause of an alert's
  ``expr`` (the convention of ``rules.yml``) is evaluated as ``<expression>``, since a healthy
  system's alert returns nothing while the quantity it watches must exist.

An empty result is a failure: a query that returns nothing is a dashboard or rule bug. Prometheus's
own rule evaluation must report no error for any rule.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stream.cli.demo import prometheus_config
from stream.cli.processes import stop_process
from stream.kafka.broker import free_port
from tests.test_deploy.promql import RULES_FILE, alert_clauses, concrete, dashboard_queries

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _four_free_ports() -> int:
    """The first of four consecutive free ports, below the range the kernel hands to outgoing connections.

    Inside that range a neighbour of a port found free is soon taken by some client's connection (the
    demo's own clients open dozens) before the demo's tuner binds it: the tuner then exits with
    "Address already in use" and its target never comes up. Below it only a listener can take one.
    """
    low = _ephemeral_low()
    if low - 4 > 10_000:
        rng = random.Random()
        for _ in range(200):
            base = rng.randrange(10_000, low - 4)
            if all(_port_free(base + n) for n in range(4)):
                return base
    for _ in range(50):  # no room below the range: the old way, inside it
        base = free_port()
        if base < 65000 and all(_port_free(base + n) for n in (1, 2, 3)):
            return base
    raise RuntimeError("no four consecutive free ports")


def _get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _query(api: str, expr: str) -> dict:
    return _get(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def _wait(what: str, check, timeout: float, log: Path | None = None, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus not found (apt-get install -y prometheus; .ci/run does it)")
    return path


@pytest.fixture(scope="module")
def stack(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory):
    """(Prometheus API base URL, demo log) with the demo holding and Prometheus scraping it."""
    tmp = tmp_path_factory.mktemp("prometheus-live")
    base = _four_free_ports()
    demo_log = tmp / "demo.log"
    env = {**os.environ, "STREAMREC_BLEND": "default", "STREAMREC_TUNER": "1", "STREAMREC_TUNER_PUBLISH_S": "1",
           "STREAMREC_TRAINER_MIN_NEW_EVENTS": "500", "STREAMREC_TRAINER_REFRESH_S": "3",
           "STREAMREC_TRAINER_EPOCHS": "1", "STREAMREC_TRAINER_DEVICE": "cpu", "STREAMREC_TRAINER_SIZE": "tiny",
           "STREAMREC_ENCODER_POLL_S": "1", "STREAMREC_DATA_DIR": str(tmp / "data")}
    with open(demo_log, "wb") as log:
        demo = subprocess.Popen([sys.executable, "-m", "stream", "demo", "--events", "4000", "--rate", "2000",
                                 "--partitions", "2", "--trainer", "--hold", "--metrics-port", str(base),
                                 "--timeout", "150"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=tmp)
    config = tmp / "prometheus.yml"
    config.write_text(prometheus_config({"streamrec-worker": [f"127.0.0.1:{base}"],
                                         "streamrec-trainer": [f"127.0.0.1:{base + 1}"],
                                         "streamrec-demo": [f"127.0.0.1:{base + 2}"],
                                         "streamrec-tuner": [f"127.0.0.1:{base + 3}"]},
                                        interval="1s", rule_files=(str(RULES_FILE),)))
    port = free_port()
    prom_log = open(tmp / "prometheus.log", "wb")
    prometheus = subprocess.Popen([prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                  stdout=prom_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}"
    try:
        _wait("Prometheus to be ready", lambda: urllib.request.urlopen(f"{api}/-/ready", timeout=2).status == 200,
              30, tmp / "prometheus.log")

        def holding() -> bool:
            if demo.poll() is not None:
                raise AssertionError(f"the demo exited with {demo.returncode}:\n{demo_log.read_text()[-3000:]}")
            return "holding" in demo_log.read_text(errors="replace")

        _wait("the demo to hold", holding, 170, demo_log)
        bootstrap = re.search(r"broker\s+(\S+:\d+)", demo_log.read_text(errors="replace")).group(1)
        yield api, bootstrap, demo_log
    finally:
        stop_process(demo, timeout=30)
        stop_process(prometheus)
        prom_log.close()


@pytest.fixture(scope="module")
def scraped(stack):
    """Keep events flowing while Prometheus collects a few seconds of every series."""
    api, bootstrap, demo_log = stack
    from stream.cli.datasets import generate
    from stream.kafka.clients import EventPublisher

    stop = threading.Event()

    def trickle() -> None:
        with EventPublisher(bootstrap, "events", batch_events=20) as publisher:
            for event in generate(n_events=20_000, seed=11):
                if stop.is_set():
                    return
                publisher.publish(event)
                time.sleep(0.004)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    _wait("all four targets up", lambda: _query(api, 'count(up{job=~"streamrec-.*"} == 1)')["data"]["result"]
          and _query(api, 'count(up{job=~"streamrec-.*"} == 1)')["data"]["result"][0]["value"][1] == "4", 30)
    _wait("a search of the tuner to be scraped",
          lambda: _query(api, "sum(streamrec_search_searches_total) > 0")["data"]["result"], 90, demo_log)
    _wait("a trained encoder version to be scraped",
          lambda: _query(api, "streamrec_encoder_published_timestamp_seconds > 0")["data"]["result"], 60, demo_log)
    # measured users' events scored against lists the served encoder weighed in on (online.shadow)
    _wait("the encoder's shadow HR to be scraped",
          lambda: _query(api, 'streamrec_encoder_shadow_hits{kind="evaluated"} > 0')["data"]["result"], 60, demo_log)
    time.sleep(6)  # a few scrapes and rule evaluations with the trickle running
    yield api
    stop.set()
    feeder.join(5)


def _returns_data(api: str, expr: str) -> str | None:
    """None when ``expr`` returns at least one series, else why not."""
    answer = _query(api, expr)
    if answer.get("status") != "success":
        return f"error {answer.get('error')}"
    result = answer["data"]["result"]
    if answer["data"]["resultType"] == "scalar":
        return None
    return None if result else "no data"


def test_every_dashboard_query_returns_data(scraped):
    failures = []
    for board, panel, expr in dashboard_queries():
        why = _returns_data(scraped, concrete(expr))
        if why:
            failures.append(f"{board} / {panel}: {expr}  -> {why}")
    assert not failures, "dashboard queries without data:\n" + "\n".join(failures)


def test_every_rule_evaluates_without_error_and_its_quantities_return_data(scraped):
    groups = _get(f"{scraped}/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules, "Prometheus loaded no rules"
    failures = []
    for rule in rules:
        if rule.get("health") != "ok":
            failures.append(f"{rule['name']}: health {rule.get('health')} {rule.get('lastError')}")
        clauses = [rule["query"]] if rule["type"] == "recording" else alert_clauses(rule["query"])
        for clause in clauses:
            why = _returns_data(scraped, clause)
            if why:
                failures.append(f"{rule['name']}: {clause}  -> {why}")
    assert not failures, "rules without data:\n" + "\n".join(failures)
