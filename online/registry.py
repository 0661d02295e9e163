"""The strategy registry: every strategy the blend can run, its frozen config and the search space of its knobs.

One :class:`StrategySpec` per strategy says four things: its ``name`` (what
``STREAMREC_BLEND`` and ``--weights`` call it), its ``Config`` (a frozen dataclass: the
strategy's hyper-parameters and their defaults), how to ``build`` it from that config,
and its ``knobs``: every field of the config as a :class:`Knob` with its range, scale
(log or linear), type (int, float, categorical) and whether a change can be applied to a
live model (``in_place``, through the model's ``mutate``) or needs a rebuild from the
recent window. The self-tuning search ranges over :func:`search_space`; the contract
suite runs over :data:`REGISTRY`.

Adding a strategy is one spec class and one line in :data:`REGISTRY` (CONTRIBUTING.md):
its settings (environment, flags, ``streamrec eval --set``), its knobs in the search
space and its row in ``docs/configuration.md`` all follow from the spec.

Every config field has a *flat name*, ``<prefix>_<field>`` (``cooc_window``; the engine's
own two models have no prefix: ``half_life``), unique across the engine: the name the
settings, ``--set`` and the search space use. :class:`StrategyConfigs` holds one config
per registered strategy (``EngineConfig.strategies``); ``weight:<strategy>`` is a
strategy's blend weight (0 switches it off). Nothing here keeps state.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from online.base import Strategy

KINDS = ("int", "float", "categorical")
#: How a learned blend ranks its pool: a network over every strategy's scores (``online.ranker``), or the weighted sum.
RANKERS = ("network", "weighted_sum")


@dataclass(frozen=True)
class Knob:
    """One hyper-parameter a search may move.

    ``field`` is the name of the config field that holds its value (a field of the
    strategy's ``Config``, or of ``EngineConfig``/``BlendConfig`` for the engine's and the
    blend's own knobs); ``attribute`` the name the built model knows it by (for ``mutate``;
    the field's name by default). ``low``/``high`` bound numeric
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
        return self.attribute or self.field

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
    """What every strategy is built with besides its own config: the engine's bounds and the seed."""

    max_users: int = 1_000_000
    max_items: int = 1_000_000
    seed: int = 0


@dataclass(frozen=True)
class NoConfig:
    """The config of a strategy without hyper-parameters of its own (the encoder slot)."""


class StrategySpec:
    """A registered strategy: subclass, set ``name``, ``summary``, ``Config``, ``knobs``; implement ``build``.

    ``prefix`` makes the flat names of the config's fields (``cooc`` → ``cooc_window``);
    every field of ``Config`` is declared by exactly one knob (the registry test checks).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    prefix: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    knobs: ClassVar[tuple[Knob, ...]] = ()
    #: Built by the engine itself (shared with its fast path) rather than by the blend.
    engine_owned: ClassVar[bool] = False
    #: A slot that ``stream/`` fills with versions of an outside model (the encoder).
    slot: ClassVar[bool] = False

    def build(self, config: Any, context: BuildContext) -> Strategy:
        raise NotImplementedError

    def flat(self, field_name: str) -> str:
        """The flat name of one of the config's fields (settings, ``--set``, the search space)."""
        return f"{self.prefix}_{field_name}" if self.prefix else field_name

    def check(self, config: Any) -> None:
        """``ValueError`` if a categorical field holds a value outside its choices (the models check numbers)."""
        if not isinstance(config, self.Config):
            raise ValueError(f"{self.name} needs a {self.Config.__qualname__}, not {type(config).__name__}")
        for knob in self.knobs:
            value = getattr(config, knob.field)
            if knob.kind == "categorical" and value not in knob.choices:
                raise ValueError(f"{self.flat(knob.field)} must be one of {', '.join(map(str, knob.choices))} "
                                 f"(got {value!r})")

    def __repr__(self) -> str:
        return f"<strategy {self.name}: {len(self.knobs)} knobs>"


class PopularitySpec(StrategySpec):
    name = "popularity"
    summary = "exponentially decayed item popularity (online.popularity.DecayedPopularity)"
    engine_owned = True

    @dataclass(frozen=True)
    class Config:
        half_life: float = 5_000.0

    knobs = (Knob("half_life", "float", 100.0, 1e6, log=True, in_place=True,
                  help="popularity half-life: events after which a past interaction counts half"),)

    def build(self, config: Config, context: BuildContext) -> Strategy:
        from online.popularity import DecayedPopularity

        return DecayedPopularity(config.half_life, context.max_items)


class NextItemSpec(StrategySpec):
    name = "next_item"
    summary = "items that followed the user's last items, strict order (online.sequential.NextItem)"
    engine_owned = True

    @dataclass(frozen=True)
    class Config:
        followers_cap: int = 32
        lookback: int = 3
        vote_top: int = 24

    knobs = (
        Knob("followers_cap", "int", 8, 512, log=True, help="next-item model: followers kept per item"),
        Knob("lookback", "int", 1, 20, log=True, in_place=True, help="next-item model: user's recent items that vote"),
        Knob("vote_top", "int", 4, 128, log=True,
             help="next-item model: strongest followers each voting item offers"),
    )

    def build(self, config: Config, context: BuildContext) -> Strategy:
        from online.sequential import NextItem

        return NextItem(config.followers_cap, config.lookback, max_items=context.max_items,
                        vote_top=config.vote_top, max_users=context.max_users)


class CooccurrenceSpec(StrategySpec):
    name = "cooccurrence"
    summary = "items seen near the user's items within a window, both directions (online.sequential.NextItem)"
    prefix = "cooc"

    @dataclass(frozen=True)
    class Config:
        window: int = 10
        lookback: int = 5
        decay: float = 0.8
        symmetric: float = 1.0
        cap: int = 64
        vote_top: int = 24
        half_life: float | None = None
        staleness: float = 0.1

    knobs = (
        Knob("window", "int", 1, 50, log=True, help="past items a new item is paired with"),
        Knob("lookback", "int", 1, 20, log=True, in_place=True, help="user's recent items that vote for candidates"),
        Knob("decay", "float", 0.1, 1.0, in_place=True,
             help="weight of each older voting item relative to the next newer one"),
        Knob("symmetric", "float", 0.0, 1.0, help="weight of backward pairs (0: order only)"),
        Knob("cap", "int", 8, 512, log=True, attribute="followers_cap", help="followers kept per item"),
        Knob("vote_top", "int", 4, 128, log=True, help="strongest followers each voting item offers"),
        Knob("half_life", "float", 1_000.0, 1e7, log=True, optional=True,
             help="pair counts decay with this half-life in events (None: never)"),
        Knob("staleness", "float", 0.0, 1.0, help="growth of an item's table before its top list is rebuilt"),
    )

    def build(self, config: Config, context: BuildContext) -> Strategy:
        from online.sequential import NextItem

        co = NextItem(followers_cap=config.cap, lookback=config.lookback, decay=config.decay,
                      max_items=context.max_items, vote_top=config.vote_top, window=config.window,
                      symmetric=config.symmetric, half_life=config.half_life,
                      max_users=context.max_users, staleness=config.staleness)
        co.name = "cooccurrence"
        return co


class ImplicitMFSpec(StrategySpec):
    name = "mf"
    summary = "implicit matrix factorisation by SGD with sampled negatives, numpy (online.mf.ImplicitMF)"
    prefix = "mf"

    @dataclass(frozen=True)
    class Config:
        factors: int = 32
        lr: float = 0.1
        l2: float = 0.01
        negatives: int = 4
        sampling: str = "uniform"

    knobs = (
        Knob("factors", "int", 4, 128, log=True, attribute="n_factors", help="latent dimensions"),
        Knob("lr", "float", 1e-3, 1.0, log=True, in_place=True, help="SGD learning rate"),
        Knob("l2", "float", 1e-5, 1e-1, log=True, in_place=True, help="L2 penalty"),
        Knob("negatives", "int", 1, 16, log=True, in_place=True, help="negatives sampled per positive"),
        Knob("sampling", "categorical", choices=("uniform", "recent"),
             help="where negatives come from: all known items, or the recent stream (by popularity)"),
    )

    def build(self, config: Config, context: BuildContext) -> Strategy:
        from online.mf import ImplicitMF

        return ImplicitMF(n_factors=config.factors, lr=config.lr, l2=config.l2, negatives=config.negatives,
                          max_users=context.max_users, max_items=context.max_items, seed=context.seed,
                          sampling=config.sampling)


class RiverMFSpec(StrategySpec):
    name = "river_mf"
    summary = "river's BiasedMF with sampled negatives (online.river_mf.RiverMF)"
    prefix = "river"

    @dataclass(frozen=True)
    class Config:
        factors: int = 10
        lr: float = 0.05
        l2: float = 0.001
        negatives: int = 4
        optimizer: str = "sgd"

    knobs = (
        Knob("factors", "int", 4, 64, log=True, attribute="n_factors", help="latent dimensions"),
        Knob("lr", "float", 1e-3, 0.2, log=True, in_place=True,
             help="optimizer learning rate (0.5 diverges to non-finite scores)"),
        Knob("l2", "float", 1e-6, 1e-1, log=True, help="L2 penalty"),
        Knob("negatives", "int", 1, 16, log=True, help="negatives sampled per positive"),
        Knob("optimizer", "categorical", choices=("sgd", "adam", "rmsprop"), help="river optimizer"),
    )

    def build(self, config: Config, context: BuildContext) -> Strategy:
        from online.river_mf import RiverMF  # river is imported only when asked for

        return RiverMF(n_factors=config.factors, lr=config.lr, l2=config.l2, negatives=config.negatives,
                       optimizer=config.optimizer, max_users=context.max_users, max_items=context.max_items,
                       seed=context.seed)


class EncoderSpec(StrategySpec):
    name = "encoder"
    summary = ("the heavy sequence encoder (models/), a slot that each version the trainer publishes "
               "fills; trained elsewhere, so no knobs here")
    slot = True

    def build(self, config: NoConfig, context: BuildContext) -> Strategy:
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


def _flat_fields() -> dict[str, tuple[str, str]]:
    """``flat name -> (strategy, config field)`` over the registry; a flat name used twice is a bug."""
    out: dict[str, tuple[str, str]] = {}
    for name, spec_ in REGISTRY.items():
        for f in fields(spec_.Config):
            flat = spec_.flat(f.name)
            if flat in out:
                raise TypeError(f"flat name {flat!r} of {name} is already {out[flat][0]}'s")
            out[flat] = (name, f.name)
    return out


#: Every strategy config field by flat name: ``"cooc_window" -> ("cooccurrence", "window")``.
STRATEGY_FIELDS: Mapping[str, tuple[str, str]] = _flat_fields()


class StrategyConfigs(Mapping[str, Any]):
    """One frozen config per registered strategy (the defaults for those not given): the
    hyper-parameters of every strategy the engine may build, as ``EngineConfig.strategies``.

    >>> configs = StrategyConfigs().replace(cooc_window=4, mf_lr=0.2)
    >>> configs["cooccurrence"].window, configs["mf"].lr, configs.flat()["half_life"]
    (4, 0.2, 5000.0)
    """

    __slots__ = ("_configs",)

    def __init__(self, configs: Mapping[str, Any] | None = None) -> None:
        given = dict(configs or {})
        unknown = sorted(set(given) - set(REGISTRY))
        if unknown:
            raise ValueError(f"unknown strategies {unknown} (choose from {', '.join(REGISTRY)})")
        built = {}
        for name, spec_ in REGISTRY.items():
            config = given.get(name)
            config = spec_.Config() if config is None else config
            spec_.check(config)
            built[name] = config
        self._configs = built

    def __getitem__(self, name: str) -> Any:
        return self._configs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._configs)

    def __len__(self) -> int:
        return len(self._configs)

    def __hash__(self) -> int:
        return hash(tuple(self._configs.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StrategyConfigs) and self._configs == other._configs

    def __repr__(self) -> str:
        changed = {flat: value for flat, value in self.flat().items() if value != _DEFAULTS[flat]}
        return f"StrategyConfigs({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def replace(self, **flat: Any) -> StrategyConfigs:
        """A copy with some fields changed, by flat name (``cooc_window=4``); unknown names raise."""
        changes: dict[str, dict[str, Any]] = {}
        for flat_name, value in flat.items():
            try:
                name, field_name = STRATEGY_FIELDS[flat_name]
            except KeyError:
                examples = ", ".join(list(STRATEGY_FIELDS)[:4])
                raise ValueError(f"{flat_name!r} is not a strategy setting (e.g. {examples})") from None
            changes.setdefault(name, {})[field_name] = value
        return StrategyConfigs({**self._configs, **{name: replace(self._configs[name], **values)
                                                    for name, values in changes.items()}})

    def flat(self) -> dict[str, Any]:
        """Every field by flat name."""
        return {flat: getattr(self._configs[name], field_name) for flat, (name, field_name) in STRATEGY_FIELDS.items()}


_DEFAULTS = StrategyConfigs().flat()

#: Knobs of the blend itself (how the strategies are combined), searched with the strategies'.
BLEND_KNOBS: tuple[Knob, ...] = (
    Knob("candidates", "int", 5, 200, log=True, help="candidates each strategy proposes per request"),
    Knob("normalise", "categorical", choices=("minmax", "rank"), help="how scores are made comparable"),
    Knob("pooling", "categorical", choices=("union", "fill"),
         help="union: every strategy proposes its best candidates; fill: each proposes ones not yet pooled"),
    Knob("learn_weights", "categorical", choices=(True, False), help="learn the weights from served lists"),
    Knob("learn_lr", "float", 1e-3, 0.5, log=True, help="learning rate of the weight learner"),
    Knob("ranker", "categorical", choices=RANKERS,
         help="how the pool is ranked: a network learned from the served lists over every strategy's scores "
              "and the weighted sum (online.ranker), or the weighted sum alone"),
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
    """``flat name -> Knob``: the engine's and the blend's knobs, and the weight and knobs of each strategy
    in ``names`` (every registered one by default; slots have a weight but no knobs)."""
    out = {knob.field: knob for knob in ENGINE_KNOBS + BLEND_KNOBS}
    for name in REGISTRY if names is None else names:
        out[f"weight:{name}"] = weight_knob(name)
        spec_ = spec(name)
        for knob in spec_.knobs:
            out[spec_.flat(knob.field)] = knob
    return out


def in_place_changes(changes: Mapping[str, Any], names: Any = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Split config changes (by flat name) into what live models can take (``{strategy: {attribute: value}}``
    for their ``mutate``; ``{"blend": {strategy: weight}}`` for ``Blend.set_weights``) and the flat names
    that need a rebuild."""
    owner: dict[str, tuple[str, Knob]] = {}
    for name in REGISTRY if names is None else names:
        spec_ = spec(name)
        for knob in spec_.knobs:
            owner[spec_.flat(knob.field)] = (name, knob)
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
