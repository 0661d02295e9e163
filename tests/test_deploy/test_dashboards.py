"""Grafana dashboards, checked without Grafana: structure, datasources, and what they show.

Every query is also evaluated against a real Prometheus in ``test_prometheus_live.py``.
"""
from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry

from stream.cli.demo import DemoMetrics
from stream.trainer.metrics import TrainerMetrics
from stream.tuner.metrics import TunerMetrics
from stream.worker.metrics import WorkerMetrics
from tests.test_deploy.promql import (
    DASHBOARD_DIR,
    REPO,
    RULES_FILE,
    concrete,
    dashboard_queries,
    dashboards,
    iter_panels,
    metric_names,
    provisioned_datasource_uids,
)

#: What the observability issue names; each must be exported and on a dashboard.
REQUIRED_ON_DASHBOARDS = (
    "streamrec_events_processed_total", "streamrec_events_dlq_total", "streamrec_recommendations_published_total",
    "streamrec_event_to_recommendation_seconds_bucket", "streamrec_batch_processing_seconds_bucket",
    "streamrec_consumer_lag", "streamrec_state_users", "streamrec_state_items", "streamrec_prequential_hit_rate",
    "streamrec_prequential_ndcg", "streamrec_tuner_arm_probability", "streamrec_tuner_learning_rate",
    "streamrec_blend_strategy_weight", "streamrec_tuner_strategy_probability", "streamrec_tuner_reward_rate",
    "streamrec_tuner_drift_events_total", "streamrec_tuner_resets_total", "streamrec_encoder_version",
    "streamrec_encoder_loaded_timestamp_seconds", "streamrec_encoder_published_timestamp_seconds",
    "streamrec_trainer_training_loss", "streamrec_trainer_sequences_per_second",
    "streamrec_trainer_events_consumed_total", "streamrec_trainer_checkpoints_total",
    # design.md's names that scripts outside the project read
    "streamrec_tuner_strategy_weight", "streamrec_encoder_age_seconds",
    # the self-tuning issue: trials, best score over time, the serving config's knobs, swaps
    "streamrec_search_trials_total", "streamrec_search_best_gain", "streamrec_search_serving_hit_rate",
    "streamrec_engine_knob", "streamrec_config_swaps_total", "streamrec_search_searches_total",
)


def _exported() -> set[str]:
    names = set()
    for create in (WorkerMetrics.create, TrainerMetrics.create, TunerMetrics.create, DemoMetrics.create):
        registry = CollectorRegistry()
        create(registry)
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_both_dashboards_exist_and_are_provisioned_from_their_folder():
    assert {"tuning.json", "operations.json"} <= set(dashboards())
    provider = (REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "streamrec.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    compose = (REPO / "docker-compose.yml").read_text()
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards" in compose
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in compose
    assert DASHBOARD_DIR == REPO / "deploy" / "grafana" / "dashboards"


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_structure(name):
    board = dashboards()[name]
    uids = provisioned_datasource_uids()
    assert uids, "the datasource provisioning file declares no uid"
    assert board["uid"] and board["title"] and isinstance(board["panels"], list)
    ids = [panel["id"] for panel in iter_panels(board["panels"])]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    for panel in iter_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        where = f"{name}: panel {panel['id']} {panel.get('title')!r}"
        assert panel.get("title"), where
        assert set(panel["gridPos"]) >= {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        targets = panel.get("targets") or []
        assert targets, f"{where} has no query"
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), f"{where}: duplicate refIds"
        for source in [panel.get("datasource")] + [target.get("datasource") for target in targets]:
            assert source is not None and source.get("uid") in uids, f"{where}: datasource {source} not provisioned"
        for target in targets:
            assert target.get("expr", "").strip(), f"{where}: empty expr"
            concrete(target["expr"])  # only known Grafana variables
    for variable in board.get("templating", {}).get("list", []):
        assert variable.get("datasource", {}).get("uid", next(iter(uids))) in uids


def test_dashboard_uids_are_unique():
    uids = [board["uid"] for board in dashboards().values()]
    assert len(uids) == len(set(uids))


def test_every_metric_the_dashboards_and_rules_read_is_exported():
    exported = _exported()
    rules = RULES_FILE.read_text()
    recorded = set(re.findall(r"record:\s*(\S+)", rules))
    exprs = [expr for _, _, expr in dashboard_queries()] + re.findall(r"expr:\s*(.+)", rules)
    for expr in exprs:
        for name in metric_names(expr):
            if name.startswith("streamrec_faust_") or name.startswith("process_") or name == "up":
                continue  # faust's sensor, prometheus_client's process collector, Prometheus itself
            assert name in exported or name in recorded, f"{name} (in {expr!r}) is not exported"


@pytest.mark.parametrize("metric", REQUIRED_ON_DASHBOARDS)
def test_every_metric_the_issue_names_is_exported_and_on_a_dashboard(metric):
    assert metric in _exported()
    shown = set().union(*(metric_names(expr) for _, _, expr in dashboard_queries()))
    assert metric in shown, f"{metric} is on no dashboard"


def test_tuning_dashboard_shows_what_the_issue_asks_for():
    board = dashboards()["tuning.json"]
    text = " ".join(target["expr"] for panel in iter_panels(board["panels"]) for target in panel.get("targets", []))
    for metric in ("streamrec_tuner_learning_rate", "streamrec_tuner_arm_probability",
                   "streamrec_blend_strategy_weight", "streamrec_tuner_reward_rate", "streamrec_prequential_hit_rate",
                   "streamrec_tuner_drift_events_total", "streamrec_tuner_strategy_weight"):
        assert metric in text


def test_arm_probabilities_are_read_by_decision_as_design_md_labels_them():
    rules = RULES_FILE.read_text()
    exprs = [expr for _, _, expr in dashboard_queries()] + re.findall(r"expr:\s*(.+)", rules)
    reads = [expr for expr in exprs if "streamrec_tuner_arm_probability" in expr]
    assert reads and all("decision" in expr and "model" not in expr for expr in reads), reads
