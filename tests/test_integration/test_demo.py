"""The README's main command, small: ``streamrec demo`` runs the whole pipe and says what happened."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_demo_replays_generated_data_and_reports_a_consistent_summary(tmp_path):
    out = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, "-m", "stream", "demo", "--events", "3000", "--rate", "3000",
                          "--no-trainer", "--json", str(out)], capture_output=True, text=True, timeout=200)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["events_processed"] == summary["events_published"] == 3000
    assert summary["dlq"] == summary["bad_messages_published"] > 0
    assert summary["lists_received"] == summary["lists_published"] > 0
    assert 0 < summary["latency_p50_s"] <= summary["latency_p99_s"]
    # The consumer's outside measurement and the worker's own agree (same definition, same lists).
    assert summary["hr@10_consumer"] == pytest.approx(summary["hr@10_worker"], abs=0.02)
    assert summary["hr@10_consumer"] > 0.05  # far above chance on a learnable stream


def test_demo_with_the_trainer_serves_an_encoder_version(tmp_path):
    out = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, "-m", "stream", "demo", "--events", "2000", "--trainer",
                          "--json", str(out)], capture_output=True, text=True, timeout=220)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["encoder_version_served"] >= 1
    assert summary["events_processed"] == summary["events_published"] == 2000


def test_a_demo_that_runs_out_of_time_says_why_and_still_writes_its_summary(tmp_path):
    out = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, "-m", "stream", "demo", "--events", "3000", "--rate", "50",
                          "--no-trainer", "--timeout", "15", "--json", str(out)], capture_output=True, text=True, timeout=200)
    assert run.returncode == 1, run.stderr[-3000:]
    said = " ".join((run.stdout + run.stderr).split())
    assert "timeout (15 s) passed" in said and "needs a longer --timeout" in said
    summary = json.loads(out.read_text())
    assert 0 < summary["events_processed"] < summary["events_published"] == 3000
