"""The strategy registry: every strategy the blend can run, with the search space of its knobs.

One :class:`StrategySpec` per strategy says three things: its ``name`` (what
``STREAMREC_BLEND`` and ``--weights`` call it), how to ``build`` it from the blend's
hyper-parameters, and its ``knobs``: every hyper-parameter a search may move, each a
:class:`Knob` with its range, scale (log or linear), type (int, float, categorical)
and whether a change can be applied to a live model (``in_place``, through the
model's ``mutate``) or needs a rebuild from the recent window. The self-tuning search
ranges over :func:`search_space`; the contract suite runs over :data:`REGISTRY`.

Adding a strategy is one spec class and one line in :data:`REGISTRY` (CONTRIBUTING.md).

Knobs name fields of :class:`~online.blend.BlendConfig` (``cooc_window``) or, for the
two strategies the engine owns (``engine_owned``), of :class:`~online.engine.EngineConfig`
(``half_life``); ``weight:<strategy>`` is the strategy's blend weight (0 switches it
off). The registry declares the space, the config records hold the values, and nothing
here keeps state.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from online.base import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from online.blend import BlendConfig

KINDS = ("int", "float", "categorical")


@dataclass(frozen=True)
class Knob:
    """One hyper-parameter a search may move.

    ``field`` is the name of the config field that holds its value; ``attribute`` the
    name the built model knows it by (for ``mutate``). ``low``/``high`` bound numeric
    knobs (inclusive), ``log`` samples them on a log scale, ``choices`` lists a
    categorical knob's values. ``optional`` allows ``None`` (switched off) besides the
    range. ``in_place``: a new value can be applied to a running model with
    ``mutate({attribute: value})``; otherwise the strategy is rebuilt.
    """

    field: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False
    in_place: bool = False
    attribute: str | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"knob {self.field}: kind must be one of {', '.join(KINDS)}")
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError(f"knob {self.field}: a categorical knob needs choices")
        elif self.low is None or self.high is None or not self.low <= self.high:
            raise ValueError(f"knob {self.field}: a numeric knob needs low <= high")
        elif self.log and not self.low > 0:
            raise ValueError(f"knob {self.field}: a log-scale knob needs low > 0")

    @property
    def model_attribute(self) -> str:
        return self.attribute or self.field.split("_", 1)[-1]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this knob's space."""
        if value is None:
            return self.optional
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind == "int" and value != int(value):
            return False
        return self.low <= value <= self.high  # type: ignore[operator]


@dataclass(frozen=True)
class BuildContext:
    """What every strategy is built with besides its own knobs: the engine's bounds."""

    max_users: int = 1_000_000
    max_items: int = 1_000_000
    half_life: float = 5_000.0
    seed: int = 0


class StrategySpec:
    """A registered strategy: subclass, set ``name``, ``knobs``, ``summary``, implement ``build``."""

    name: str = ""
    summary: str = ""
    knobs: tuple[Knob, ...] = ()
    #: Built by the engine itself (shared with its fast path) rather than by the blend.
    engine_owned: bool = False
    #: A slot that ``stream/`` fills with versions of an outside model (the encoder).
    slot: bool = False

    def build(self, config: BlendConfig, context: BuildContext) -> Strategy:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<strategy {self.name}: {len(self.knobs)} knobs>"


class PopularitySpec(StrategySpec):
    name = "popularity"
    summary = "exponentially decayed item popularity (online.popularity.DecayedPopularity)"
    engine_owned = True
    knobs = (Knob("half_life", "float", 100.0, 1e6, log=True, in_place=True, attribute="half_life",
                  help="events after which a past interaction counts half"),)

    def build(self, config: BlendConfig, context: BuildContext) -> Strategy:
        from online.popularity import DecayedPopularity

        return DecayedPopularity(context.half_life, context.max_items)


class NextItemSpec(StrategySpec):
    name = "next_item"
    summary = "items that followed the user's last items, strict order (online.sequential.NextItem)"
    engine_owned = True
    knobs = (
        Knob("lookback", "int", 1, 20, log=True, in_place=True, help="user's recent items that vote"),
        Knob("followers_cap", "int", 8, 512, log=True, help="followers kept per item"),
        Knob("vote_top", "int", 4, 128, log=True, help="strongest followers each voting item offers"),
    )

    def build(self, config: BlendConfig, context: BuildContext) -> Strategy:
        from online.sequential import NextItem

        return NextItem(max_items=context.max_items, max_users=context.max_users)


class CooccurrenceSpec(StrategySpec):
    name = "cooccurrence"
    summary = "items seen near the user's items within a window, both directions (online.sequential.NextItem)"
    knobs = (
        Knob("cooc_window", "int", 1, 50, log=True, help="past items a new item is paired with"),
        Knob("cooc_lookback", "int", 1, 20, log=True, in_place=True, attribute="lookback",
             help="user's recent items that vote for candidates"),
        Knob("cooc_decay", "float", 0.1, 1.0, in_place=True, attribute="decay",
             help="weight of each older voting item relative to the next newer one"),
        Knob("cooc_symmetric", "float", 0.0, 1.0, help="weight of backward pairs (0: order only)"),
        Knob("cooc_cap", "int", 8, 512, log=True, help="followers kept per item"),
        Knob("cooc_vote_top", "int", 4, 128, log=True, help="strongest followers each voting item offers"),
        Knob("cooc_half_life", "float", 1_000.0, 1e7, log=True, optional=True,
             help="pair counts decay with this half-life in events (None: never)"),
        Knob("cooc_staleness", "float", 0.0, 1.0, help="growth of an item's table before its top list is rebuilt"),
    )

    def build(self, config: BlendConfig, context: BuildContext) -> Strategy:
        from online.sequential import NextItem

        co = NextItem(followers_cap=config.cooc_cap, lookback=config.cooc_lookback, decay=config.cooc_decay,
                      max_items=context.max_items, vote_top=config.cooc_vote_top, window=config.cooc_window,
                      symmetric=config.cooc_symmetric, half_life=config.cooc_half_life,
                      max_users=context.max_users, staleness=config.cooc_staleness)
        co.name = "cooccurrence"
        return co


class ImplicitMFSpec(StrategySpec):
    name = "mf"
    summary = "implicit matrix factorisation by SGD with sampled negatives, numpy (online.mf.ImplicitMF)"
    knobs = (
        Knob("mf_factors", "int", 4, 128, log=True, help="latent dimensions"),
        Knob("mf_lr", "float", 1e-3, 1.0, log=True, in_place=True, help="SGD learning rate"),
        Knob("mf_l2", "float", 1e-5, 1e-1, log=True, in_place=True, help="L2 penalty"),
        Knob("mf_negatives", "int", 1, 16, log=True, in_place=True, help="negatives sampled per positive"),
        Knob("mf_sampling", "categorical", choices=("uniform", "recent"),
             help="where negatives come from: all known items, or the recent stream (by popularity)"),
    )

    def build(self, config: BlendConfig, context: BuildContext) -> Strategy:
        from online.mf import ImplicitMF

        return ImplicitMF(n_factors=config.mf_factors, lr=config.mf_lr, l2=config.mf_l2,
                          negatives=config.mf_negatives, max_users=context.max_users, max_items=context.max_items,
                          seed=config.seed, sampling=config.mf_sampling)


class RiverMFSpec(StrategySpec):
    name = "river_mf"
    summary = "river's BiasedMF with sampled negatives (online.river_mf.RiverMF)"
    knobs = (
        Knob("river_factors", "int", 4, 64, log=True, help="latent dimensions"),
        Knob("river_lr", "float", 1e-3, 0.2, log=True, in_place=True,
             help="optimizer learning rate (0.5 diverges to non-finite scores)"),
        Knob("river_l2", "float", 1e-6, 1e-1, log=True, help="L2 penalty"),
        Knob("river_negatives", "int", 1, 16, log=True, help="negatives sampled per positive"),
        Knob("river_optimizer", "categorical", choices=("sgd", "adam", "rmsprop"), help="river optimizer"),
    )

    def build(self, config: BlendConfig, context: BuildContext) -> Strategy:
        from online.river_mf import RiverMF  # river is imported only when asked for

        return RiverMF(n_factors=config.river_factors, lr=config.river_lr, l2=config.river_l2,
                       negatives=config.river_negatives, optimizer=config.river_optimizer,
                       max_users=context.max_users, max_items=context.max_items, seed=config.seed)


class EncoderSpec(StrategySpec):
    name = "encoder"
    summary = ("the heavy sequence encoder (models/), a slot that each version the trainer publishes "
               "fills; trained elsewhere, so no knobs here")
    slot = True

    def build(self, config: BlendConfig, context: BuildContext) -> Strategy:
        from online.blend import StrategySlot

        return StrategySlot(self.name)


def _specs(*specs: StrategySpec) -> dict[str, StrategySpec]:
    return {spec.name: spec for spec in specs}


#: Every strategy the blend can run, by name.
REGISTRY: Mapping[str, StrategySpec] = _specs(
    PopularitySpec(),
    NextItemSpec(),
    CooccurrenceSpec(),
    ImplicitMFSpec(),
    RiverMFSpec(),
    EncoderSpec(),
)

#: Knobs of the blend itself (how the strategies are combined), searched with the strategies'.
BLEND_KNOBS: tuple[Knob, ...] = (
    Knob("candidates", "int", 5, 200, log=True, help="candidates each strategy proposes per request"),
    Knob("normalise", "categorical", choices=("minmax", "rank"), help="how scores are made comparable"),
    Knob("learn_weights", "categorical", choices=(True, False), help="learn the weights from served lists"),
    Knob("learn_lr", "float", 1e-3, 0.5, log=True, help="learning rate of the weight learner"),
)


#: Knobs of the engine around the strategies (per-user memory, the candidate head).
ENGINE_KNOBS: tuple[Knob, ...] = (
    Knob("history_len", "int", 5, 500, log=True, help="recent items kept per user"),
    Knob("popularity_candidates", "int", 5, 200, log=True, help="popular items offered to every list"),
)


def spec(name: str) -> StrategySpec:
    """The registered strategy ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r} (choose from {', '.join(REGISTRY)})") from None


def weight_knob(name: str) -> Knob:
    """The blend weight of strategy ``name`` as a knob (applied in place by ``Blend.set_weights``)."""
    return Knob(f"weight:{name}", "float", 0.0, 1.0, in_place=True, help=f"blend weight of {name} (0: off)")


def search_space(names: Any = None) -> dict[str, Knob]:
    """``field -> Knob``: the engine's and the blend's knobs, and the weight and knobs of each strategy
    in ``names`` (every registered one by default; slots have a weight but no knobs)."""
    out = {knob.field: knob for knob in ENGINE_KNOBS + BLEND_KNOBS}
    for name in REGISTRY if names is None else names:
        out[f"weight:{name}"] = weight_knob(name)
        for knob in spec(name).knobs:
            out[knob.field] = knob
    return out


def in_place_changes(changes: Mapping[str, Any], names: Any = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Split config changes into what live models can take (``{strategy: {attribute: value}}`` for
    their ``mutate``; ``{"blend": {strategy: weight}}`` for ``Blend.set_weights``) and the fields
    that need a rebuild."""
    owner: dict[str, tuple[str, Knob]] = {}
    for name in REGISTRY if names is None else names:
        for knob in spec(name).knobs:
            owner[knob.field] = (name, knob)
    in_place: dict[str, dict[str, Any]] = {}
    rebuild: list[str] = []
    for field_name, value in changes.items():
        found = owner.get(field_name)
        if field_name.startswith("weight:"):
            in_place.setdefault("blend", {})[field_name.split(":", 1)[1]] = value
        elif found is not None and found[1].in_place:
            in_place.setdefault(found[0], {})[found[1].model_attribute] = value
        else:
            rebuild.append(field_name)
    return in_place, rebuild

