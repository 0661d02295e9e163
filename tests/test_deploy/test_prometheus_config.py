"""promtool accepts the Prometheus configuration and the rules; the rules follow the test convention.

``promtool`` comes with Debian's ``prometheus`` package (``.ci/run`` installs it); skips without it.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.test_deploy.promql import PROMETHEUS_CONFIG, RULES_FILE


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found (apt-get install -y prometheus; .ci/run does it)")
    return path


def test_promtool_check_config(promtool):
    run = subprocess.run([promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 rule files found" in run.stdout + run.stderr


def test_promtool_check_rules(promtool):
    run = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_issue_s_alerts_are_there():
    alerts = set(re.findall(r"^\s*- alert:\s*(\w+)", RULES_FILE.read_text(), re.MULTILINE))
    for wanted in ("StreamrecConsumerLagRising", "StreamrecDeadLetterRateHigh", "StreamrecTunerStuckOnOneArm",
                   "StreamrecEncoderStale", "StreamrecRecommendationLatencyHigh"):
        assert wanted in alerts


def test_every_role_is_scraped_under_the_job_names_the_dashboards_use():
    from stream.cli.demo import JOBS

    text = PROMETHEUS_CONFIG.read_text()
    for job in ("streamrec-worker", "streamrec-trainer"):
        assert f"job_name: {job}" in text
    assert "streamrec-demo" in text and set(JOBS) == {"streamrec-worker", "streamrec-trainer", "streamrec-demo"}


def test_alerts_fire_on_trouble_and_stay_quiet_when_healthy(promtool):
    """``deploy/prometheus/rules_test.yml``: promtool's rule unit tests on synthetic histories."""
    run = subprocess.run([promtool, "test", "rules", str(RULES_FILE.parent / "rules_test.yml")], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
