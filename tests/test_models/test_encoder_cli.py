"""``streamrec train`` / ``streamrec encoder-eval`` glue (stream/cli/encoder.py) on a generated file."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from stream.cli.datasets import generate
from stream.cli.encoder import add_parsers


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamrec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "events.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for e in generate(n_events=3_000, n_users=60, n_items=300, seed=1):
            writer.writerow([e.user_id, e.item_id, e.ts])
    return path


def test_train_then_evaluate(data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ckpt"
    assert _run(["train", "--data", str(data_file), "--format", "csv", "--epochs", "1", "--device", "cpu",
                 "--out", str(out), "--json", str(tmp_path / "train.json")]) == 0
    printed = capsys.readouterr().out.strip()
    assert Path(printed).is_file() and Path(printed).parent == out
    train_report = json.loads((tmp_path / "train.json").read_text())
    assert train_report["checkpoint"] == printed and len(train_report["epoch_reports"]) == train_report["epochs"] == 1
    for protocol in ("sasrec", "full"):
        target = tmp_path / f"{protocol}.json"
        assert _run(["encoder-eval", "--data", str(data_file), "--format", "csv", "--checkpoint", printed,
                     "--protocol", protocol, "--json", str(target)]) == 0
        metrics = json.loads(target.read_text())
        assert metrics["protocol"] == protocol and metrics["users"] > 0
        assert 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0
    assert "NDCG@10" in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback(data_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert _run(["train", "--data", str(tmp_path / "missing.csv"), "--format", "csv", "--out", str(tmp_path)]) == 2
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert _run(["encoder-eval", "--data", str(data_file), "--format", "csv", "--checkpoint", str(bad)]) == 2
    assert _run(["train", "--data", str(data_file), "--format", "csv", "--max-len", "0",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err
