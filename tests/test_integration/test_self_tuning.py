"""Self-tuning end to end on the embedded broker: ``streamrec tuner`` searches the live stream and
announces a winner on ``config-updates``; a running worker swaps to it warm, keeps serving and
still excludes what each user has seen; a tuner killed mid-search continues its stored study."""
from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from stream.cli.processes import spawn_process, stop_process
from stream.cli.scrape import scrape, total
from stream.kafka.broker import create_topics, free_port
from stream.kafka.clients import EventPublisher, RecommendationConsumer, RequestPublisher
from stream.settings import Settings
from tests.test_integration.conftest import worker_process
from tests.test_online.test_search import sequential_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _wait(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:  # not serving metrics yet
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def _metric(url: str, name: str, **labels: str) -> float:
    return total(scrape(url), name, **labels)


@pytest.fixture
def tuning_settings(worker_settings: Settings, tmp_path: Path) -> Settings:
    """Fresh topics and group, a worker that starts on popularity alone (the cycle stream beats it for
    certain), tiny search cadences, and a study of its own in an SQLite file."""
    tag = "-st" + uuid.uuid4().hex[:6]
    t = worker_settings.topics
    return worker_settings.replace(
        app_id=worker_settings.kafka.app_id + tag, topic_events=t.events + tag, topic_requests=t.requests + tag,
        topic_recommendations=t.recommendations + tag, topic_dlq=t.dlq + tag,
        topic_model_updates=t.model_updates + tag, topic_tuning=t.tuning + tag,
        topic_config_updates="config-updates" + tag, metrics_port=free_port(), data_dir=str(tmp_path / "worker"),
        blend="popularity=1", self_tune=True, tuner=False, search_first=600, search_every=100_000,
        search_window=600, search_trials=4, search_timeout_s=60,
        search_storage=f"sqlite:///{tmp_path / 'study' / 'tuner.db'}", search_study="cycle")


def _start_tuner(settings: Settings, port: int, log_path: Path) -> tuple[subprocess.Popen, object]:
    log = open(log_path, "ab")
    return spawn_process(["tuner", "--metrics-port", str(port)], settings, log), log


def _publish(settings: Settings, events: list, start: int) -> None:
    with EventPublisher(settings.kafka.bootstrap_servers, settings.topics.events, batch_events=20) as publisher:
        for n, event in enumerate(events, start):
            publisher.publish(event._replace(event_id=f"e{n}"))


def _ask(settings: Settings, user_id: str, timeout: float = 30.0) -> list[str]:
    consumer = RecommendationConsumer.from_settings(settings)
    consumer.connect()  # assigned before asking: the answer cannot be missed
    requests = RequestPublisher.from_settings(settings)
    request_id = requests.request(user_id, k=10)
    requests.close()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for value, _ in consumer.poll(0.2):
                if value.get("request_id") == request_id:
                    return [entry["item_id"] for entry in value["items"]]
    finally:
        consumer.close()
    raise AssertionError(f"no answer to request {request_id}")


def test_the_worker_swaps_to_the_tuners_winner_warm_and_keeps_serving(tuning_settings, tmp_path):
    settings = tuning_settings
    worker_url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    tuner_port = free_port()
    tuner_url = f"http://{settings.metrics.host}:{tuner_port}/metrics"
    events = sequential_stream(1_400, seed=3)
    with worker_process(settings, tmp_path / "worker.log"):
        tuner, tuner_log = _start_tuner(settings, tuner_port, tmp_path / "tuner.log")
        try:
            _publish(settings, events[:1_000], 0)
            _wait("the tuner to announce a winner", lambda: _metric(tuner_url, "streamrec_search_config_version") >= 1,
                  90, tmp_path / "tuner.log")
            assert _metric(tuner_url, "streamrec_search_searches_total", result="accepted") == 1
            assert _metric(tuner_url, "streamrec_search_trials_total") >= 2
            assert _metric(tuner_url, "streamrec_search_serving_hit_rate") < 0.5
            assert _metric(tuner_url, "streamrec_search_best_gain") > 0.02
            _wait("the worker to apply the swap",
                  lambda: _metric(worker_url, "streamrec_config_swaps_total", result="applied") >= 1, 60,
                  tmp_path / "worker.log")
        finally:
            stop_process(tuner)
            tuner_log.close()
        samples = scrape(worker_url)
        assert total(samples, "streamrec_config_version") == 1
        assert total(samples, "streamrec_config_swaps_total", result="refused") == 0
        knobs = {dict(labels)["knob"] for (name, labels), _ in samples.items() if name == "streamrec_engine_knob"}
        assert "weight:popularity" in knobs or "weight:next_item" in knobs or "weight:cooccurrence" in knobs
        users_before = total(samples, "streamrec_state_users")
        lists_before = total(samples, "streamrec_recommendations_published_total", trigger="push")

        _publish(settings, events[1_000:], 1_000)  # lists keep flowing after the swap
        _wait("lists after the swap", lambda: _metric(worker_url, "streamrec_events_processed_total") >= len(events)
              and _metric(worker_url, "streamrec_recommendations_published_total", trigger="push") > lists_before,
              60, tmp_path / "worker.log")
        assert _metric(worker_url, "streamrec_state_users") >= users_before  # no user forgotten
        user = events[-1].user_id
        seen = {event.item_id for event in events if event.user_id == user}
        served = _ask(settings, user)
        assert served and not seen & set(served), "an item the user has seen was recommended after the swap"


def _finished_trials(settings: Settings) -> int:
    import optuna

    study = optuna.load_study(study_name=settings.search.study, storage=settings.search.storage)
    return sum(1 for trial in study.trials if trial.state.name in ("COMPLETE", "PRUNED"))


def test_a_tuner_killed_mid_search_continues_the_same_study(tuning_settings, tmp_path):
    settings = tuning_settings.replace(search_trials=500, search_timeout_s=120)  # a search far longer than the test
    create_topics(settings.kafka.bootstrap_servers, settings.topic_specs())
    _publish(settings, sequential_stream(800, seed=4), 0)
    port = free_port()
    url = f"http://{settings.metrics.host}:{port}/metrics"
    log_path = tmp_path / "tuner.log"
    tuner, log = _start_tuner(settings, port, log_path)
    try:
        _wait("a few trials", lambda: _metric(url, "streamrec_search_trials_total") >= 3, 90, log_path)
        assert _metric(url, "streamrec_search_running") == 1
        tuner.kill()  # SIGKILL mid-search: no clean-up, no result
        tuner.wait(10)
    finally:
        stop_process(tuner)
        log.close()
    before = _finished_trials(settings)
    assert before >= 3

    tuner, log = _start_tuner(settings, port, log_path)  # the same group: it re-reads the events, searches again
    try:
        _wait("the study to grow", lambda: _finished_trials(settings) >= before + 3, 90, log_path)
        assert _metric(url, "streamrec_search_trials_total") >= 3  # the new process's own trials
    finally:
        stop_process(tuner)
        log.close()
    assert _finished_trials(settings) >= before + 3
    assert "Traceback" not in log_path.read_text(errors="replace")
