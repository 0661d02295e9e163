"""A user's encoder state, kept up to date one item at a time, is the encoder's own output over the
user's window: through appends, window restarts, evictions, mixed micro-batches and odd histories."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from models import incremental
from models.config import EncoderConfig
from models.encoder import SequenceEncoder
from models.incremental import IncrementalStates

N_ITEMS = 40


def encoder(**changes) -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(EncoderConfig.tiny(n_items=N_ITEMS).copy(**changes)).eval()


def full_pass(model: SequenceEncoder, window: tuple[int, ...]) -> np.ndarray:
    with torch.inference_mode():
        return model.last_hidden(torch.tensor([list(window)]))[0].numpy()


class Windows:
    """The window rule, written out plainly: grow by the new items; when they do not fit, keep the
    window's newest max_len // 2 - 1 items (max_len - max_len // 2 + 1 leave) and add them (so one new
    item restarts it at its newest max_len // 2); anything else (a new user, a history changed otherwise,
    new items that fit in no window with the kept ones) takes the last max_len."""

    def __init__(self, max_len: int) -> None:
        self.max_len, self.windows = max_len, {}

    def next(self, user: str, key: tuple[int, ...]) -> tuple[int, ...]:
        old = self.windows.get(user)
        new = None
        if old is not None:
            for k in range(len(key)):
                head = key[: len(key) - k]
                if head[-len(old):] == old[-len(head):]:
                    new = k
                    break
        if new is None:
            window = key[-self.max_len:]
        elif new == 0:
            window = old
        elif len(old) + new <= self.max_len:
            window = old + key[-new:]
        elif (kept := old[self.max_len - self.max_len // 2 + 1:]) and len(kept) + new <= self.max_len:
            window = kept + key[-new:]
        else:
            window = key[-self.max_len:]
        self.windows[user] = window
        return window


@pytest.mark.parametrize("changes", [{}, {"n_heads": 2, "max_len": 12, "ffn_mult": 2}],
                         ids=["tiny", "two-heads-short-window"])
def test_every_state_equals_the_encoders_pass_over_the_users_window(changes) -> None:
    model = encoder(**changes)
    states, rule = IncrementalStates(model), Windows(model.config.max_len)
    rng = random.Random(1)
    histories: dict[str, list[int]] = {f"u{i}": [] for i in range(10)}
    for _ in range(150):
        users = rng.sample(list(histories), rng.randint(1, 7))
        for user in users:  # mostly one new item, sometimes several, in one micro-batch
            histories[user] = (histories[user] + [rng.randint(1, N_ITEMS) for _ in range(rng.choice([1, 1, 1, 2, 5]))])[-30:]
        keys = [tuple(histories[u][-model.config.max_len:]) for u in users]
        got, _ = states.states(users, keys)
        for user, key, state in zip(users, keys, got):
            np.testing.assert_allclose(state, full_pass(model, rule.next(user, key)), atol=2e-5)


def test_under_memory_pressure_every_state_is_the_encoders_pass_over_a_window_of_the_rule() -> None:
    """Few slots for many users: evictions, stolen shadows and restarts without one interleave. A user
    evicted since their last call is computed afresh over their last max_len items; otherwise the rule."""
    model = encoder(max_len=8)
    per_user_mb = 2 * model.config.n_blocks * model.config.max_len * model.config.hidden * 4 / 2**20
    states, rule = IncrementalStates(model, cache_mb=6.5 * per_user_mb), Windows(8)
    rng = random.Random(3)
    histories: dict[str, list[int]] = {f"u{i}": [] for i in range(9)}
    for _ in range(200):
        users = rng.sample(list(histories), rng.randint(1, 4))
        for user in users:
            histories[user] = (histories[user] + [rng.randint(1, N_ITEMS) for _ in range(rng.choice([1, 1, 2, 4]))])[-20:]
        keys = [tuple(histories[u][-8:]) for u in users]
        got, _ = states.states(users, keys)
        for user, key, state in zip(users, keys, got):
            kept, fresh = rule.next(user, key), key[-8:]
            if np.allclose(state, full_pass(model, kept), atol=2e-5):
                continue
            np.testing.assert_allclose(state, full_pass(model, fresh), atol=2e-5)  # evicted: afresh
            rule.windows[user] = fresh


def test_a_new_item_costs_one_position_and_nothing_new_costs_none() -> None:
    states = IncrementalStates(encoder())
    states.states(["u"], [(1, 2, 3)])
    assert states.tokens_computed == 3
    _, computed = states.states(["u"], [(1, 2, 3, 4)])
    assert states.tokens_computed == 4 and computed == 1
    _, computed = states.states(["u"], [(1, 2, 3, 4)])
    assert states.tokens_computed == 4 and computed == 0


def test_a_full_window_restarts_at_its_newest_half() -> None:
    model = encoder(max_len=8)
    states = IncrementalStates(model)
    history = tuple(range(1, 9))  # eight items: the window is full
    states.states(["u"], [history])
    longer = history[1:] + (9,)  # the history keeps its last 8; the ninth item does not fit
    state = states.states(["u"], [longer])[0][0]
    assert states.tokens_computed == 8 + 4
    np.testing.assert_allclose(state, full_pass(model, (6, 7, 8, 9)), atol=2e-5)
    state = states.states(["u"], [longer[1:] + (10,)])[0][0]  # and grows again from there
    np.testing.assert_allclose(state, full_pass(model, (6, 7, 8, 9, 10)), atol=2e-5)


def test_a_restart_by_one_new_item_costs_one_position_from_the_shadow_window() -> None:
    model = encoder(max_len=8)
    states, rule = IncrementalStates(model), Windows(8)
    history: tuple[int, ...] = ()
    for item in range(1, 40):  # one new item per call, through several restarts
        history = (history + (item,))[-8:]
        before = states.tokens_computed
        state = states.states(["u"], [history])[0][0]
        # the window's position and, from its 6th item on, the shadow's: never the restart's four afresh
        assert states.tokens_computed - before <= 2
        np.testing.assert_allclose(state, full_pass(model, rule.next("u", history)), atol=2e-5)


def test_without_a_slot_for_the_shadow_a_restart_is_computed_afresh_and_still_right() -> None:
    model = encoder(max_len=8)
    per_user_mb = 2 * model.config.n_blocks * model.config.max_len * model.config.hidden * 4 / 2**20
    states, rule = IncrementalStates(model, cache_mb=1.5 * per_user_mb), Windows(8)
    assert states.capacity == 1  # the user's own window only
    history: tuple[int, ...] = ()
    computed = []
    for item in range(1, 20):
        history = (history + (item,))[-8:]
        before = states.tokens_computed
        state = states.states(["u"], [history])[0][0]
        computed.append(states.tokens_computed - before)
        np.testing.assert_allclose(state, full_pass(model, rule.next("u", history)), atol=2e-5)
    assert max(computed) == 4  # a restart: the newest max_len // 2 afresh


def test_a_new_user_takes_the_least_recently_served_users_shadow_before_their_window() -> None:
    model = encoder(max_len=8)
    per_user_mb = 2 * model.config.n_blocks * model.config.max_len * model.config.hidden * 4 / 2**20
    states = IncrementalStates(model, cache_mb=3.5 * per_user_mb)
    assert states.capacity == 3
    states.states(["a"], [tuple(range(1, 8))])  # seven items: past the restart's start, a shadow too
    states.states(["b"], [(1, 2)])
    assert len(states) == 2  # three slots taken: a's window and shadow, b's window
    before = states.tokens_computed
    states.states(["c"], [(3, 4)])  # no slot free: a's shadow goes, a stays
    assert len(states) == 3
    states.states(["a"], [tuple(range(1, 9))])
    assert states.tokens_computed - before == 2 + 1  # c's two, then one for a: its window was kept


@pytest.mark.parametrize("n_users", [1, 8], ids=["one-new-user-compiled", "many-new-users-torch"])
def test_new_users_windows_are_computed_whole_in_either_engine(n_users) -> None:
    model = encoder()
    states = IncrementalStates(model)
    max_len = model.config.max_len
    users = [f"u{i}" for i in range(n_users)]
    keys = [tuple((i + j) % N_ITEMS + 1 for j in range(max_len)) for i in range(n_users)]
    # one user's window is below the size that goes to torch, eight users' are above it
    assert (n_users * max_len >= incremental._TORCH_FROM) == (n_users > 1)
    got, computed = states.states(users, keys)
    assert computed == n_users
    for key, state in zip(keys, got):
        np.testing.assert_allclose(state, full_pass(model, key), atol=2e-5)
    extended = [key[1:] + (1,) for key in keys]  # and they go on from what was cached
    got, _ = states.states(users, extended)
    for key, state in zip(extended, got):
        np.testing.assert_allclose(state, full_pass(model, key[-(max_len // 2):]), atol=2e-5)


def test_a_shadow_never_takes_the_slot_a_new_user_of_the_same_call_needs() -> None:
    model = encoder(max_len=8)
    per_user_mb = 2 * model.config.n_blocks * model.config.max_len * model.config.hidden * 4 / 2**20
    states = IncrementalStates(model, cache_mb=3.5 * per_user_mb)
    states.states(["b"], [(1, 2)])
    states.states(["a"], [(1, 2, 3, 4, 5)])  # not yet past the restart's start: no shadow
    # a's sixth item would start a shadow in the last free slot, which the new user c needs
    states.states(["a", "c"], [(1, 2, 3, 4, 5, 6), (7, 8)])
    assert len(states) == 3
    assert states.states(["b"], [(1, 2)])[1] == 0  # b was not evicted for a's shadow


def test_a_history_changed_otherwise_is_computed_afresh() -> None:
    model = encoder()
    states = IncrementalStates(model)
    states.states(["u"], [(1, 2, 3)])
    state = states.states(["u"], [(7, 8)])[0][0]  # not the old window followed by new items
    np.testing.assert_allclose(state, full_pass(model, (7, 8)), atol=2e-5)


def test_memory_is_bounded_and_an_evicted_user_comes_back_computed_afresh() -> None:
    model = encoder()
    per_user_mb = 2 * model.config.n_blocks * model.config.max_len * model.config.hidden * 4 / 2**20
    states = IncrementalStates(model, cache_mb=3.5 * per_user_mb)
    assert states.capacity == 3
    for user in ("a", "b", "c", "d"):  # "a", the least recently served, makes room for "d"
        states.states([user], [(1, 2)])
    assert len(states) == 3
    before = states.tokens_computed
    state = states.states(["a"], [(1, 2, 3)])[0][0]
    assert states.tokens_computed - before == 3  # its cached positions were gone
    np.testing.assert_allclose(state, full_pass(model, (1, 2, 3)), atol=2e-5)


def test_a_micro_batch_larger_than_the_cache_is_served_whole() -> None:
    model = encoder()
    per_user_mb = 2 * model.config.n_blocks * model.config.max_len * model.config.hidden * 4 / 2**20
    states = IncrementalStates(model, cache_mb=2.5 * per_user_mb)
    users = [f"u{i}" for i in range(6)]
    keys = [(i + 1, i + 2) for i in range(6)]
    got, _ = states.states(users, keys)
    for key, state in zip(keys, got):
        np.testing.assert_allclose(state, full_pass(model, key), atol=2e-5)
    assert len(states) == 2


def test_states_without_a_user_are_computed_and_not_kept() -> None:
    model = encoder()
    states = IncrementalStates(model)
    state = states.states([None], [(3, 4, 5)])[0][0]
    np.testing.assert_allclose(state, full_pass(model, (3, 4, 5)), atol=2e-5)
    assert len(states) == 0


def test_the_weights_are_copied_at_construction() -> None:
    model = encoder()
    states = IncrementalStates(model)
    expected = full_pass(model, (1, 2))
    with torch.no_grad():
        model.item_emb.weight.add_(1.0)  # a later change to the model does not reach the states
    np.testing.assert_allclose(states.states(["u"], [(1, 2)])[0][0], expected, atol=2e-5)


@pytest.mark.parametrize("changes", [{}, {"n_heads": 2, "max_len": 12, "ffn_mult": 2}],
                         ids=["tiny", "two-heads-short-window"])
def test_the_compiled_steps_leave_the_encoders_own_states_and_cache(changes) -> None:
    """``models.kernels.run_steps``, fed calls of every kind (cached users one to eight new items at a time,
    new users, users without a slot), leaves each user's state and the keys and values in their slot
    equal to the encoder's own pass over their window (``states_and_cache``)."""
    model = encoder(**changes)
    states = IncrementalStates(model)
    rng = random.Random(5)
    histories: dict[str, list[int]] = {f"u{n}": [] for n in range(12)}
    for _ in range(40):
        users = rng.sample(sorted(histories), rng.randint(1, 6))
        for user in users:
            histories[user] += [rng.randint(1, N_ITEMS) for _ in range(rng.choice([1, 1, 2, 5, 8]))]
        keys = [tuple(histories[user][-model.config.max_len:]) for user in users]
        users_or_none = [None if user == "u0" else user for user in users]  # u0 is never cached
        got, _ = states.states(users_or_none, keys)
        for user, key, state in zip(users_or_none, keys, got):
            window = states._entries[user].window if user is not None else key
            np.testing.assert_allclose(state, full_pass(model, window), atol=2e-5)
    for entry in states._entries.values():  # every slot holds the encoder's keys and values for its window
        with torch.inference_mode():
            _, keys, values = model.states_and_cache(torch.tensor([list(entry.window)]))
        width = len(entry.window)
        np.testing.assert_allclose(states._keys[:, entry.slot, :, :width], keys[:, 0].numpy(), atol=2e-5)
        np.testing.assert_allclose(states._values[:, entry.slot, :, :width], values[:, 0].numpy(), atol=2e-5)
