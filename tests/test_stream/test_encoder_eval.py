"""``streamrec eval --encoder on``: the trainer replayed beside the engine, versions served when they would
reach a worker, and the encoder's contribution measured on the same lists."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from online.base import Interaction  # noqa: E402
from online.blend import BlendConfig  # noqa: E402
from online.engine import EngineConfig, StreamingRecommender  # noqa: E402
from stream.cli.main import main  # noqa: E402


class FixedVersions:
    """A stand-in for the replayed trainer: hands over given versions at given events."""

    def __init__(self, at: dict[int, object]) -> None:
        self.at = at
        self.log = type("Log", (), {"position": 0})()
        self.served = None
        self.records: list = []
        self.cpu_s = 0.0

    def observe(self, pairs):
        ready = []
        for _ in pairs:
            self.log.position += 1
            if self.log.position in self.at:
                self.served = self.at[self.log.position]
                ready.append(self.served)
        return ready


def test_versions_are_served_from_their_event_and_refilled_after_a_config_swap() -> None:
    import torch

    from models import EncoderConfig, SequenceEncoder
    from models.refresh import EncoderVersion
    from stream.cli.encoder_eval import EncoderInTheLoop

    torch.manual_seed(0)
    items = [f"i{j}" for j in range(10)]
    version = EncoderVersion(SequenceEncoder(EncoderConfig.tiny(n_items=10)).eval(), items, 1, 0)
    engine = StreamingRecommender(EngineConfig(blend=BlendConfig()))
    loop = EncoderInTheLoop(engine, FixedVersions({3: version}), weight=0.5)
    events = [Interaction(f"u{n % 2}", f"i{n % 10}", float(n)) for n in range(6)]
    loop.learn_many(events[:2])
    assert "encoder" not in engine.blend.strategies
    loop.learn_many(events[2:4])  # the version reaches serving at event 3
    assert engine.blend.strategies["encoder"].strategy is loop.scorer and loop.encoder_swaps == [{"event": 4, "version": 1}]
    assert loop.recommend("u0").versions == (("encoder", 1),)
    loop.inner = StreamingRecommender(EngineConfig(blend=BlendConfig()))  # a config swap: a fresh blend
    loop.learn_many(events[4:])
    assert loop.inner.blend.strategies["encoder"].strategy is loop.scorer


def test_eval_with_the_encoder_reports_its_contribution(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report.json"
    code = main(["eval", "--generated", "1500", "--strategy", "blend", "--self-tune", "off", "--encoder", "on",
                 "--encoder-train-s", "2", "--no-progress", "--json", str(out),
                 "--set", "trainer_size=tiny", "--set", "trainer_epochs=2", "--set", "trainer_min_new_events=400",
                 "--set", "trainer_refresh_s=0", "--set", "encoder_gate_z=0"])  # (the gate: test_gated_eval_...)
    assert code == 0
    report = json.loads(out.read_text())
    enc = report["encoder"]
    assert enc["on"] and enc["evaluated"] == report["evaluated"]
    assert enc["hr@10"] == pytest.approx(report["hr@10"])  # the served lists are the run's lists
    assert enc["hits"] == enc["hits_without_encoder"] + enc["hits_owed_to_encoder"] - enc["hits_lost_to_encoder"]
    refreshes = enc["refreshes"]
    assert refreshes and refreshes[0]["started_at"] == 400 and refreshes[0]["ready_at"] == 600  # 2 s at 100 ev/s
    assert [s["event"] >= 600 for s in enc["swaps"]] == [True] * len(enc["swaps"])
    assert enc["timeline"] and "encoder in the stream" in capsys.readouterr().out


def test_the_eval_loop_gates_a_harmful_encoder_as_a_worker_does_and_reports_the_served_lists() -> None:
    from online.evaluation import iter_prequential
    from stream.cli.encoder_eval import EncoderInTheLoop
    from tests.test_online.helpers import EncoderVersion, stream
    from tests.test_online.test_strategy_gate import JUNK

    # ranked by the weighted sum, where an encoder at weight 1 moves every list (under the network ranker,
    # which learns which strategies' scores to follow, the junk loses fewer hits: test_strategy_gate.py's _worker)
    blend = BlendConfig.parse("popularity=0.2,next_item=0.2", ranker="weighted_sum")
    engine = StreamingRecommender(EngineConfig(k=5, blend=blend))
    loop = EncoderInTheLoop(engine, FixedVersions({}), weight=1.0, gate_z=1.96)
    events = stream(1_200, items=100, seed=3)
    loop.learn_many(events[:300])
    loop.scorer = EncoderVersion(2, JUNK)  # as if the trainer had served it (a version that costs hits)
    loop._fill()
    final = list(iter_prequential(events[300:], engine=loop))[-1]
    report = loop.report(5)
    gate = report["gate"]
    assert not gate["serving"] and gate["mutes"] >= 1 and 0 < gate["lists_muted"] < gate["lists"]
    assert report["hits_lost_to_encoder"] > report["hits_owed_to_encoder"]
    # what was served beat the lists with the encoder, measured on the same moments
    assert final["hr@5"] > report["hr@5"]
    assert loop.point(900)["encoder_muted"] is True
