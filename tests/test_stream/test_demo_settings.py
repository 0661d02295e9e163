"""The demo's own defaults: one partition and a free metrics port, unless a flag or the environment says otherwise."""
from __future__ import annotations

from stream.cli.demo import DemoOptions, demo_pacer
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
    assert args.rate == "auto" and args.linger_ms == 25.0
    assert demo_pacer(DemoOptions(tail_ms=args.tail_ms), 20_000).tail_s == 0.1


def test_the_demo_runs_the_trainer_by_default_and_keeps_the_tail_objective_with_it() -> None:
    assert build_parser().parse_args(["demo"]).trainer is True
    assert build_parser().parse_args(["demo", "--no-trainer"]).trainer is False
    assert demo_pacer(DemoOptions(trainer=True), 20_000).tail_s == 0.1
    assert demo_pacer(DemoOptions(trainer=True, tail_ms=150), 20_000).tail_s == 0.15
    assert demo_pacer(DemoOptions(trainer=True, tail_ms=0), 20_000).tail_s is None  # 0: throughput alone


def test_the_paced_replay_never_runs_so_slow_that_the_demo_would_time_out() -> None:
    pacer = demo_pacer(DemoOptions(timeout=300.0), 60_000)
    assert pacer.min_rate * 0.6 * 300.0 >= 60_000 - 1e-6
    assert demo_pacer(DemoOptions(rate=500.0), 20_000) is None  # a fixed rate is not paced
