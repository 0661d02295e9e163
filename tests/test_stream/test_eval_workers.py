"""``streamrec eval --workers N``: the group simulated with the live workers' sharing mechanism."""
from __future__ import annotations

import argparse
import json

import pytest

from stream.cli import evaluate


def _run(argv):
    parser = argparse.ArgumentParser()
    evaluate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("STREAMREC_"):
            monkeypatch.delenv(key)


def test_shared_item_knowledge_beats_learning_alone_and_reports_what_it_sent(tmp_path, capsys):
    results = {}
    for scope in ("partitions", "shared"):
        out = tmp_path / f"{scope}.json"
        assert _run(["--generated", "3000", "--strategy", "blend", "--workers", "4", "--learn-scope", scope,
                     "--share-delay", "100", "--json", str(out)]) == 0
        results[scope] = json.loads(out.read_text())
    assert "4 workers over 8 partitions" in capsys.readouterr().out
    assert results["shared"]["hr@10"] > results["partitions"]["hr@10"]
    assert results["shared"]["deltas"] > 0 and results["partitions"]["deltas"] == 0


def test_workers_refuse_what_the_simulation_does_not_model(capsys):
    assert _run(["--generated", "500", "--workers", "2", "--batch-size", "10"]) == 2
    assert "--workers simulates the plain engine" in capsys.readouterr().err
