"""``streamrec tune``: the tuner's search offline, on a file or the demo's stream; the winner as environment lines."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("optuna")

from stream.cli.main import main  # noqa: E402


def test_tune_prints_the_winner_as_environment_lines_and_keeps_the_study(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STREAMREC_BLEND", "popularity=1")  # the serving config a search must beat
    out, plot, storage = tmp_path / "tune.json", tmp_path / "trials.png", f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["tune", "--generated", "3000", "--window", "2000", "--trials", "4", "--no-progress",
                 "--set", "search_startup_trials=2", "--storage", storage, "--json", str(out),
                 "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["window"] == 2000 and report["trials"] == 4 and len(report["trials_detail"]) == 4
    assert report["serving_hr"] >= 0 and report["best_hr"] is not None
    lines = [line for line in printed.splitlines() if line.startswith("STREAMREC_")]
    assert lines and lines == report["environment"]  # only settings that differ from the defaults
    assert any(line.startswith("STREAMREC_BLEND=") for line in lines)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["tune", "--generated", "3000", "--window", "2000", "--trials", "2", "--no-progress",
                 "--storage", storage]) == 0  # the stored study goes on
    import optuna

    assert len(optuna.load_study(study_name="streamrec", storage=storage).trials) >= 6


def test_tune_says_what_is_wrong_with_its_arguments(capsys):
    assert main(["tune", "--generated", "100", "--window", "1", "--no-progress"]) == 2
    assert "--window must be >= 2" in capsys.readouterr().err
