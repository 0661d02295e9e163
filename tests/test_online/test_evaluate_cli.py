"""``streamrec eval``: the JSON outside scripts read, the table, and one-line user errors."""
from __future__ import annotations

import argparse
import json

import pytest

from stream.cli import evaluate
from tests.test_online.helpers import stream


def _run(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    evaluate.add_parser(sub)
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("STREAMREC_"):
            monkeypatch.delenv(key)


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "events.csv"
    lines = ["userId,movieId,timestamp"] + [f"{e.user_id},{e.item_id},{int(e.ts)}" for e in stream(400)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("strategy", ["engine", "blend", "cooccurrence"])
def test_csv_to_json_with_the_documented_keys(csv_file, tmp_path, capsys, strategy):
    out = tmp_path / "deep" / "result.json"
    assert _run(["--data", str(csv_file), "--format", "csv", "--k", "5", "--json", str(out),
                 "--strategy", strategy, "--no-progress"]) == 0
    report = json.loads(out.read_text())
    for key in ("events", "evaluated", "hr@5", "ndcg@5", "mrr@5", "coverage", "events_per_s", "curve"):
        assert key in report
    assert report["events"] == 400 and len(report["curve"]) == 10 and report["batch_size"] == 1
    assert "hr@5" in capsys.readouterr().out


def test_generated_stream_limit_weights_and_batches(tmp_path):
    out = tmp_path / "r.json"
    assert _run(["--generated", "3000", "--limit", "1000", "--weights", "popularity=0.3,cooccurrence=1",
                 "--fixed-weights", "--batch-size", "10", "--json", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["events"] == 1000 and report["batch_size"] == 10 and "fixed" in report["engine"]


@pytest.mark.parametrize("argv,message", [
    (["--data", "/no/such/file.csv", "--format", "csv"], "no such file"),
    (["--data", "{csv}"], "--format"),
    (["--data", "{csv}", "--format", "jsonl"], "not valid jsonl"),
    (["--generated", "100", "--weights", "popularity=1,bogus=1"], "unknown strategies"),
    (["--generated", "100", "--k", "0"], "--k"),
    (["--generated", "0"], "positive"),
])
def test_user_errors_are_one_line_and_exit_2(csv_file, capsys, argv, message):
    argv = [a.replace("{csv}", str(csv_file)) for a in argv]
    assert _run(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_tuner_on_prints_the_trajectory_writes_the_plot_and_the_tuning_json(tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "plots" / "tuning.png"
    assert _run(["--generated", "1500", "--tuner", "on", "--tuner-policy", "ucb", "--set", "mf_lr=0.05",
                 "--set", "popularity=0.1", "--json", str(out), "--plot", str(png), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    tuner = report["tuner"]
    assert tuner["on"] and tuner["policy"] == "ucb" and tuner["final"]["policy"] == "ucb"
    assert tuner["trajectory"][0]["learning_rates"]["mf"] == 0.05  # --set picked the starting rate
    assert set(tuner["final"]["models"]["mf"]["arms"]) == {"x0.5", "x1", "x2"}
    assert "mf=" in report["engine"] and "tuned weights" in report["engine"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tuning trajectory" in capsys.readouterr().out


def test_tuner_off_runs_one_fixed_configuration_set_by_set(tmp_path):
    out = tmp_path / "r.json"
    assert _run(["--generated", "800", "--tuner", "off", "--strategy", "blend", "--fixed-weights",
                 "--set", "cooccurrence=0.5", "--set", "cooc_window=4", "--set", "half_life=100",
                 "--json", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["tuner"]["on"] is False and "final" not in report["tuner"]
    assert "cooccurrence=0.5" in report["engine"] and "fixed" in report["engine"]
    weights = report["tuner"]["trajectory"][-1]["weights"]
    assert weights == report["tuner"]["trajectory"][0]["weights"]  # nothing moves them


def test_tuner_default_follows_the_worker_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_TUNER", "1")
    out = tmp_path / "r.json"
    assert _run(["--generated", "600", "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["tuner"]["on"] is True


@pytest.mark.parametrize("argv,message", [
    (["--generated", "100", "--set", "bogus=1"], "unknown name"),
    (["--generated", "100", "--set", "mf_lr"], "NAME=VALUE"),
    (["--generated", "100", "--set", "mf_lr=fast"], "not a valid float"),
    (["--generated", "100", "--set", "popularity=-1"], "finite number >= 0"),
    (["--generated", "100", "--tuner", "on", "--set", "k=3"], "--k"),
])
def test_set_errors_are_one_line(capsys, argv, message):
    assert _run(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_eval_runs_the_production_loop_by_default_searching_only_the_past(tmp_path):
    out = tmp_path / "r.json"
    assert _run(["--generated", "5000", "--weights", "popularity=1", "--fixed-weights", "--json", str(out),
                 "--no-progress", "--set", "search_first=2500", "--set", "search_every=100000",
                 "--set", "search_window=2000", "--set", "search_keep=2500", "--set", "search_trials=4",
                 "--set", "search_startup_trials=2", "--set", "search_drift=false"]) == 0
    report = json.loads(out.read_text())
    tuning = report["self_tune"]
    assert tuning["on"] and [search["at"] for search in tuning["searches"]] == [2500, 5000]  # spacing doubles
    search = tuning["searches"][0]
    assert search["window_events"] == 2000 and search["trials"] == 4
    if search["accepted"]:  # popularity alone is easy to beat on the drifting stream; the swap is then served
        assert tuning["swaps"][0]["applied"] and report["engine_final"] != report["engine"]


def test_self_tuning_can_be_switched_off(tmp_path):
    out = tmp_path / "r.json"
    assert _run(["--generated", "3000", "--self-tune", "off", "--json", str(out), "--no-progress",
                 "--set", "search_first=1000"]) == 0
    assert json.loads(out.read_text())["self_tune"] == {"on": False}
