"""Data files are read in time order from every supported format; the generator is seeded."""
from __future__ import annotations

from collections import defaultdict

import pytest

from stream.cli.datasets import generate, load
from stream.errors import DataFormatError
from stream.wire.schema import parse_timestamp


def test_movielens_rows_are_sorted_by_time_stably(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t10\t5\t300\n2\t20\t3\t100\n3\t30\t4\t300\n")
    events = load(path, "movielens")
    assert [(e.user_id, e.item_id, e.ts, e.value) for e in events] == \
        [("2", "20", 100.0, 3.0), ("1", "10", 300.0, 5.0), ("3", "30", 300.0, 4.0)]


@pytest.mark.parametrize("header", ["userId,movieId,rating,timestamp", "user_id,item_id,value,ts",
                                    "user,item,rating,time"])
def test_csv_headers_with_common_spellings(tmp_path, header):
    path = tmp_path / "ratings.csv"
    path.write_text(f"{header}\n1,10,4.5,200\n2,20,3.0,100\n")
    assert [(e.user_id, e.item_id, e.ts) for e in load(path, "csv")] == [("2", "20", 100.0), ("1", "10", 200.0)]


def test_csv_without_a_user_column_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="no user column"):
        load(path, "csv")


def test_jsonl_and_sasrec(tmp_path):
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text('{"user_id": "u1", "item_id": "i1", "type": "view", "ts": "2023-11-14T22:13:20Z"}\n')
    (event,) = load(jsonl, "jsonl")
    assert (event.user_id, event.type, event.ts) == ("u1", "view", 1700000000.0)
    sasrec = tmp_path / "seq.txt"
    sasrec.write_text("1 5\n1 6\n2 5\n")
    assert [(e.user_id, e.item_id) for e in load(sasrec, "sasrec")] == [("1", "5"), ("1", "6"), ("2", "5")]


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(DataFormatError, match="unknown format"):
        load(tmp_path / "x", "parquet")
    with pytest.raises(DataFormatError, match="no such file"):
        load(tmp_path / "missing", "csv")


def test_timestamps():
    assert parse_timestamp("1700000000.5") == 1700000000.5
    assert parse_timestamp("2023-11-14T22:13:20+00:00") == 1700000000.0
    with pytest.raises(ValueError):
        parse_timestamp(float("nan"))


def test_generated_stream_is_seeded_ordered_and_drifts():
    a, b = generate(4_000, seed=3), generate(4_000, seed=3)
    assert a == b and a != generate(4_000, seed=4)
    assert all(x.ts <= y.ts for x, y in zip(a, a[1:]))


    def repeat_share(earlier, later):  # share of later events on items the same user touched earlier
        touched = defaultdict(set)
        for e in earlier:
            touched[e.user_id].add(e.item_id)
        mine = [e for e in later if e.user_id in touched]
        return sum(e.item_id in touched[e.user_id] for e in mine) / len(mine)

    big = generate(20_000, seed=3)
    q1, q2, q3 = big[:5_000], big[5_000:10_000], big[10_000:15_000]
    assert repeat_share(q2, q3) < 0.5 * repeat_share(q1, q2)  # each user's tastes moved halfway


def test_ml100k_reads_all_ratings_in_time_order(ml100k_path):
    events = load(ml100k_path, "movielens")
    assert len(events) == 100_000
    assert all(x.ts <= y.ts for x, y in zip(events, events[1:]))
