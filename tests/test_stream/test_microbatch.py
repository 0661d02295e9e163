"""A fetch is cut into micro-batches of about ``batch_max`` events, whatever the shape of its messages."""
from __future__ import annotations

import pytest

from stream.worker.microbatch import MicroBatches


def test_single_event_messages_are_cut_every_max_events_messages_in_order():
    cuts = list(MicroBatches(max_events=3).cut(list(range(8))))
    assert cuts == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_once_arrays_were_seen_a_cut_holds_about_max_events_events_not_max_events_messages():
    batches = MicroBatches(max_events=1_000)
    for _ in range(30):  # 200-event arrays, micro-batch after micro-batch
        for cut in batches.cut(list(range(40))):
            batches.observe(len(cut), 200 * len(cut))
    sizes = [len(cut) for cut in batches.cut(list(range(40)))]
    assert sizes[0] == 5 and sum(sizes) == 40  # 5 arrays of 200: 1,000 events


def test_the_first_fetch_is_cut_as_if_every_message_held_one_event():
    assert [len(c) for c in MicroBatches(max_events=2).cut(list(range(5)))] == [2, 2, 1]


def test_a_micro_batch_of_at_least_one_message_even_when_one_message_holds_more_than_max_events():
    batches = MicroBatches(max_events=10)
    for _ in range(20):
        batches.observe(1, 500)
    assert [len(c) for c in batches.cut(list(range(3)))] == [1, 1, 1]
    with pytest.raises(ValueError):
        MicroBatches(max_events=0)
