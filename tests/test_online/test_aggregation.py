"""Scale-out by item (``online.aggregation``): the group's pairs aggregated once, summaries replacing a
worker's view of an item, the worker's own newest evidence kept."""
from __future__ import annotations

from online.aggregation import ItemAggregator, RecentOwnPairs, apply_summary, counts_only, pairs_only
from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender
from online.scaleout import simulate_workers
from online.sequential import NextItem
from online.sharing import NEXT_ITEM, DeltaCollector


def learned(engine: StreamingRecommender, user: str, items: list[str], source: int = 0, first: int = 0):
    """``engine`` learns ``user`` touching ``items`` in order; returns the sealed deltas."""
    batch = DeltaCollector(source)
    batch.cover(first, first + len(items) - 1)
    engine.learn_many([Interaction(user, item, float(n)) for n, item in enumerate(items)], deltas=batch)
    return batch.seal()


def test_a_summary_is_the_items_table_in_units_of_a_pair_learned_now_and_replaces_another_models_table() -> None:
    source, target = NextItem(half_life=10.0, window=2, symmetric=1.0), NextItem(half_life=10.0)
    source.learn_many([Interaction("u", item, float(n)) for n, item in enumerate("abcab")])
    target.learn_pairs([("a", "z")])
    summary = source.summary("a")
    target.replace_followers("a", summary)
    assert target.summary("a") == summary  # "z" is gone: the group's view replaced the local one
    assert target.mass_of("a") == sum(summary.values())
    target.replace_followers("a", summary)  # a second copy changes nothing
    assert target.summary("a") == summary


def test_the_stage_applies_each_delta_once_and_summarises_the_items_with_most_new_evidence_first() -> None:
    worker, stage = StreamingRecommender(), ItemAggregator()
    deltas = learned(worker, "u1", ["a", "b", "a", "b", "a", "c"])
    assert stage.add(pairs_only(deltas)) and not stage.add(pairs_only(deltas))
    first = stage.summaries(budget=1)
    assert [(model, item) for model, item, _ in first] == [(NEXT_ITEM, "a")]  # a -> b twice, a -> c once
    assert first[0][2] == {"b": 2.0, "c": 1.0}
    rest = stage.summaries(budget=10)
    assert "a" not in [item for _, item, _ in rest]  # nothing new since its summary
    assert stage.summaries(budget=10) == []


def test_an_item_learned_on_one_worker_reaches_another_workers_lists_through_a_summary() -> None:
    here, there, stage = StreamingRecommender(), StreamingRecommender(), ItemAggregator()
    there.learn_many([Interaction("v", "x", 0.0)])
    stage.add(pairs_only(learned(here, "u", ["x", "new"])))
    assert "new" not in [item for item, _ in there.recommend("v").items]
    for summary in stage.summaries(budget=5):
        apply_summary(there, *summary)
    assert [item for item, _ in there.recommend("v").items][0] == "new"


def test_a_summary_keeps_what_the_receiving_worker_learned_after_the_stages_cut() -> None:
    config = EngineConfig()
    worker, stage, own = StreamingRecommender(config), ItemAggregator(config), RecentOwnPairs()
    early = learned(worker, "u", ["a", "b"], first=0)
    own.record(10, early, {NEXT_ITEM: 0.0})
    stage.add(pairs_only(early))
    late = learned(worker, "u", ["a", "c"], first=2)  # published at 20: the stage has not received it
    own.record(20, late, {NEXT_ITEM: 0.0})
    (model, item, followers), = [s for s in stage.summaries(budget=5) if s[1] == "a"]
    assert followers == {"b": 1.0}
    apply_summary(worker, model, item, followers, own.after(10, model, item))
    assert worker.next_item.summary("a") == {"b": 1.0, "c": 1.0}  # the newest pair survives the summary
    own.forget(20)
    assert own.after(10, model, item) == {}


def test_popularity_still_travels_as_counts_and_pairs_as_pairs() -> None:
    deltas = learned(StreamingRecommender(), "u", ["a", "b"])
    assert counts_only(deltas).pairs == {} and counts_only(deltas).pop_counts == deltas.pop_counts
    assert pairs_only(deltas).pop_items == [] and pairs_only(deltas).pairs == deltas.pairs


def test_the_simulated_group_by_item_serves_one_workers_knowledge_on_another() -> None:
    # worker 0's users walk a catalogue of 60 items in order; then each of worker 1's users touches one
    # item and, next, the item after it: only worker 0 ever saw that order
    items = [f"i{n:02d}" for n in range(60)]
    walks = [Interaction(f"u{3 * user}", item, 0.0) for user in range(30) for item in items]
    probes = [Interaction(f"u{3 * n + 1}", item, 0.0) for n in range(59) for item in items[n:n + 2]]
    common = dict(workers=3, shard_of=lambda user: int(user[1:]) % 3, shards=3, delay=10, flush_every=5)
    alone = simulate_workers(walks + probes, mode="partitions", **common)
    by_item = simulate_workers(walks + probes, mode="by-item", budget=500.0, **common)
    assert by_item["summaries"] > 0 and by_item["aggregate_s"] > 0
    assert by_item["hits"] - alone["hits"] >= 50  # of the 59 probes' second items
