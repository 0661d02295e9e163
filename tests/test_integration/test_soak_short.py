"""A short soak (benchmarks/soak.py's core) against a real worker: nothing published is lost."""
from __future__ import annotations

import pytest

from tests.test_integration.conftest import worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_short_soak_processes_every_published_event(worker_settings, tmp_path):
    from benchmarks.soak import run_soak, summary_table

    settings = worker_settings.replace(max_users=2_000)  # the cap is hit within the run, as in the real soak
    lines: list[str] = []
    with worker_process(settings, tmp_path / "worker.log") as process:
        summary = run_soak(settings, process.pid, rate=400, duration=12, users=1_000_000, report_every=3,
                           drain_timeout=20, out=lines.append)
        assert process.poll() is None
    report = "\n".join(lines) + "\n" + summary_table(summary)
    assert summary["published"] >= 0.8 * 400 * 12, report  # the publisher kept (roughly) its rate
    assert summary["lost"] == 0 and summary["processed"] == summary["published"], report
    assert summary["lists_matched"] >= 0.5 * summary["published"], report  # lists came back and were matched
    assert summary["latency_ms"][99] is not None and len(summary["samples"]) >= 4, report
    assert summary["state_users_last"] == 2_000 and summary["user_cap_reached_at_s"] is not None, report
    assert all(s["worker_rss_mb"] > 0 for s in summary["samples"]), report
