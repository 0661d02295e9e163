"""The README's "by hand" path: `streamrec broker`, `worker`, `publish`, `consume`, `request` as processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from stream.kafka.broker import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def streamrec(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream", *args], capture_output=True, text=True, timeout=120,
                          **kwargs)


def test_broker_worker_publish_consume_request_from_the_command_line(tmp_path):
    port = free_port()
    broker = subprocess.Popen([sys.executable, "-m", "stream", "broker", "--port", str(port), "--partitions", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = None
    try:
        banner = broker.stdout.readline()
        assert f"127.0.0.1:{port}" in banner and "events[2]" in banner, banner
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "STREAMREC_PARTITIONS": "2",
               "STREAMREC_METRICS_PORT": str(free_port()), "STREAMREC_DATA_DIR": str(tmp_path / "w")}
        worker = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env,
                                  stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT)
        data = tmp_path / "ratings.csv"
        data.write_text("userId,movieId,rating,timestamp\n" +
                        "".join(f"{n % 7},{n % 13},4,{1000 + n}\n" for n in range(200)))
        published = streamrec("publish", "--data", str(data), "--format", "csv", env=env)
        assert published.returncode == 0, published.stderr
        assert json.loads(published.stdout.strip().splitlines()[-1])["events"] == 200
        consumed = streamrec("consume", "--from-beginning", "--limit", "3", "--timeout", "60", env=env)
        lines = [json.loads(line) for line in consumed.stdout.splitlines() if line.strip()]
        assert len(lines) == 3 and all("items" in line for line in lines), consumed.stderr
        answer = streamrec("request", "--user", "3", "--k", "4", "--timeout", "30", env=env)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["k"] == 4
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        broker.send_signal(signal.SIGINT)
        broker.wait(20)
    assert broker.returncode == 0


def test_help_texts_name_every_command():
    out = streamrec("--help").stdout
    for command in ("broker", "worker", "publish", "consume", "request", "demo"):
        assert command in out
    assert "KAFKA_BOOTSTRAP_SERVERS" in streamrec("worker", "--help").stdout


def test_a_missing_data_file_is_one_clear_line_not_a_traceback(tmp_path):
    run = streamrec("publish", "--data", str(tmp_path / "nope.csv"), "--format", "csv")
    assert run.returncode == 2 and "no such file" in run.stderr and "Traceback" not in run.stderr
