"""The demo's own defaults: one partition and a free metrics port, unless a flag or the environment says otherwise."""
from __future__ import annotations

from stream.cli.main import build_parser, demo_settings


def _settings(*argv: str):
    return demo_settings(build_parser().parse_args(["demo", *argv]))


def test_the_demo_runs_one_partition_and_a_free_metrics_port_by_default(monkeypatch) -> None:
    monkeypatch.delenv("STREAMREC_PARTITIONS", raising=False)
    monkeypatch.delenv("STREAMREC_METRICS_PORT", raising=False)
    settings = _settings()
    assert settings.kafka.partitions == 1
    assert settings.metrics.port == 0


def test_a_flag_or_the_environment_sets_the_demos_partitions(monkeypatch) -> None:
    monkeypatch.delenv("STREAMREC_PARTITIONS", raising=False)
    assert _settings("--partitions", "4").kafka.partitions == 4
    monkeypatch.setenv("STREAMREC_PARTITIONS", "3")
    assert _settings().kafka.partitions == 3
    assert _settings("--partitions", "2").kafka.partitions == 2  # flag > environment


def test_the_demo_paces_for_a_tail_objective_and_lingers_by_default() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.rate == "auto" and args.tail_ms == 100.0 and args.linger_ms == 25.0
