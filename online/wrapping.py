"""What every engine that wraps a ``StreamingRecommender`` passes through to it, written once.

The tuner (``online.tuning.TunedRecommender``) and the self-tuning loop
(``online.search.SelfTunedRecommender``) each hold the engine that keeps the users and the
models as ``self.engine`` and add a policy on top; readers (the processor's metrics, the
handoff, eval) see the wrapped engine's state through these delegations, never through
private attributes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from online.base import Interaction
from online.engine import EngineConfig, StreamingRecommender, UserState
from online.sharing import ItemDeltas


class WrapsEngine:
    """Delegates the engine's state to ``self.engine`` (set by the subclass)."""

    engine: StreamingRecommender

    @property
    def config(self) -> EngineConfig:
        return self.engine.config

    @property
    def blend(self) -> Any:
        return self.engine.blend

    @property
    def prequential(self) -> Any:
        return self.engine.prequential

    @property
    def n_users(self) -> int:
        return self.engine.n_users

    @property
    def n_items(self) -> int:
        return self.engine.n_items

    @property
    def events_learned(self) -> int:
        return self.engine.events_learned

    def user_state(self, user_id: str) -> UserState | None:
        return self.engine.user_state(user_id)

    def user_ids(self) -> list[str]:
        return self.engine.user_ids()

    def export_users(self, user_ids: Iterable[str]) -> dict[str, tuple[list[str], list[str]]]:
        return self.engine.export_users(user_ids)

    def import_users(self, states: Mapping[str, tuple[list[str], list[str]]]) -> int:
        return self.engine.import_users(states)

    # -- item sharing (online.sharing): the wrapped engine's item positions and deltas ---------------
    @property
    def item_positions(self) -> dict[int, int]:
        return self.engine.item_positions

    @property
    def deltas_applied(self) -> int:
        return self.engine.deltas_applied

    @property
    def item_events(self) -> int:
        return self.engine.item_events

    @property
    def events_shared_in(self) -> int:
        return self.engine.events_shared_in

    def hold_items(self, source: int, position: int) -> None:
        self.engine.hold_items(source, position)

    def knows_items(self, source: int, position: int) -> bool:
        return self.engine.knows_items(source, position)

    def learn_users(self, interactions: Sequence[Interaction]) -> None:
        self.engine.learn_users(interactions)

    def apply_item_deltas(self, deltas: ItemDeltas) -> bool:
        return self.engine.apply_item_deltas(deltas)
