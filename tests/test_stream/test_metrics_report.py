"""The demo's one-page report and its Prometheus config, from recorded data (no broker)."""
from __future__ import annotations

import json

from stream.cli import demo
from stream.cli.demo import free_ports, metrics_ports, prometheus_config, write_report
from stream.cli.scrape import MetricsHistory


def _history() -> MetricsHistory:
    history = MetricsHistory()
    for n in range(10):
        history.add(100.0 + n, {
            ("streamrec_events_processed_total", (("type", "click"),)): 500.0 * n,
            ("streamrec_recommendations_published_total", (("trigger", "push"),)): 400.0 * n,
            ("streamrec_prequential_hit_rate", (("k", "10"), ("window", "recent"))): 0.02 * n,
            ("streamrec_prequential_ndcg", (("k", "10"), ("window", "recent"))): 0.01 * n,
            ("streamrec_tuner_learning_rate", (("model", "mf"),)): 0.05 * (1 + n / 10),
            ("streamrec_blend_strategy_weight", (("strategy", "popularity"),)): 0.3,
            ("streamrec_blend_strategy_weight", (("strategy", "next_item"),)): 0.7,
            ("streamrec_tuner_arm_probability", (("arm", "x1"), ("decision", "mf"))): 0.5,
            ("process_cpu_seconds_total", ()): 1.0,  # not streamrec_: not kept
            ("streamrec_engine_knob", (("knob", "cooc_window"),)): 10.0 if n < 5 else 17.0,  # a swap at n = 5
            ("streamrec_engine_knob", (("knob", "history_len"),)): 50.0,
            ("streamrec_config_version", ()): 0.0 if n < 5 else 1.0,
        })
    return history


def test_history_series_and_label_curves():
    history = _history()
    times, values = history.series("streamrec_events_processed_total")
    assert times[:2] == [100.0, 101.0] and values[-1] == 4500.0
    assert set(history.by_label("streamrec_blend_strategy_weight", "strategy")) == {"popularity", "next_item"}
    assert history.by_label("streamrec_tuner_arm_probability", "decision", "arm").keys() == {"mf/x1"}
    assert not history.series("process_cpu_seconds_total")[0]


def test_history_stays_bounded():
    history = MetricsHistory(max_points=10)
    for n in range(100):
        history.add(float(n), {("streamrec_x", ()): float(n)})
    assert len(history.times) <= 10 and history.times[0] == 0.0 and history.times[-1] == 99.0


def test_report_png_and_html(tmp_path):
    lists = [("u1", "e1", ("i1",), 100.0 + n / 10, 100.05 + n / 10) for n in range(50)]
    summary = {"events_published": 5000, "lists_received": 50, "hr@10_consumer": 0.2, "self_tune_searches": 1,
               "self_tune_swaps_applied": 1}
    png = write_report(tmp_path / "run.png", _history(), lists, summary, 10)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = write_report(tmp_path / "run.html", _history(), lists, summary, 10).read_text()
    assert "data:image/png;base64," in html and "hr@10_consumer" in html and "self_tune_swaps_applied" in html
    knobs = _history().by_label("streamrec_engine_knob", "knob")
    assert knobs["cooc_window"][1][0] != knobs["cooc_window"][1][-1]  # the knob the report plots moved


def test_report_without_tuner_data_or_lists(tmp_path):
    path = write_report(tmp_path / "empty.png", MetricsHistory(), [], {}, 10)
    assert path.stat().st_size > 0


def test_prometheus_config_and_ports():
    config = json.loads(prometheus_config({"streamrec-worker": ["127.0.0.1:7000"], "streamrec-trainer": []},
                                          interval="1s", rule_files=("/x/rules.yml",)))
    assert config["global"]["scrape_interval"] == "1s" and config["rule_files"] == ["/x/rules.yml"]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["streamrec-worker"]
    assert metrics_ports(7000) == (7000, 7001, 7002)
    assert len(set(metrics_ports(0))) == 3


def test_the_demo_never_hands_out_one_port_twice_nor_a_taken_one(monkeypatch):
    """The broker and the processes bind their ports only once started: a port handed out twice (the kernel
    gives a just-closed port again) stopped the trainer on the broker's port."""
    offered = iter([5000, 5000, 6000, 5000, 7000, 6000, 8000])
    monkeypatch.setattr(demo, "free_port", lambda: next(offered))
    assert free_ports(2, taken=(6000,)) == [5000, 7000]
    assert free_ports(1, taken=(6000, 7000)) == [8000]
