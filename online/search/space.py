"""The whole engine's search space, read from the registry, and the config a sampled point means.

Every knob comes from :mod:`online.registry`: the engine's and the blend's own, and for each
searched strategy a switch (``use:<name>``), its blend weight (``weight:<name>``, log scale)
and, only while it is on, every knob of its config. The space is conditional (Optuna's
define-by-run), so a trial that switches ``mf`` off spends no dimensions on its learning
rate. An optional knob (``cooc_half_life``) has a switch ``<flat>:off`` besides its range.

A point is a :class:`Candidate`: blend weights plus flat values, which
:meth:`Candidate.config` lays over the serving ``EngineConfig``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from online.blend import BlendConfig
from online.engine import EngineConfig
from online.registry import BLEND_KNOBS, ENGINE_KNOBS, Knob, spec

#: Strategies searched by default: the online ones that learn fast enough to be replayed in a
#: trial. ``river_mf`` is slower and weaker than ``mf`` here; the ``encoder`` is trained elsewhere.
SEARCHED = ("popularity", "cooccurrence", "next_item", "mf")  # the shipped blend's order, then mf

#: Engine knobs that only the fixed mix reads (the searched configs are blends).
_FIXED_MIX_ONLY = frozenset({"popularity_candidates"})
_WEIGHT_LOW, _WEIGHT_HIGH = 0.05, 1.0
_BLEND_FIELDS = frozenset(f.name for f in dataclasses.fields(BlendConfig))


@dataclass(frozen=True)
class Candidate:
    """One point of the space: the blend's ``weights`` and every other knob's value by flat name."""

    weights: tuple[tuple[str, float], ...]
    values: Mapping[str, Any]

    def config(self, base: EngineConfig) -> EngineConfig:
        """``base`` with this point's blend, engine fields and strategy fields (``base.k`` and bounds kept)."""
        blend_values = {name: value for name, value in self.values.items() if name in _BLEND_FIELDS}
        rest = {name: value for name, value in self.values.items() if name not in _BLEND_FIELDS}
        blend = BlendConfig(weights=self.weights, seed=(base.blend.seed if base.blend else 0), **blend_values)
        return base.replace(blend=blend, **rest)

    def describe(self) -> str:
        """One line: the weights, then the values (what a log or a report shows)."""
        weights = ",".join(f"{name}={weight:.2g}" for name, weight in self.weights)
        values = " ".join(f"{name}={_short(value)}" for name, value in sorted(self.values.items()))
        return f"{weights} {values}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SearchSpace:
    """The knobs a search ranges over: the engine's, the blend's, and those of ``strategies``."""

    strategies: tuple[str, ...] = SEARCHED

    def __post_init__(self) -> None:
        for name in self.strategies:
            if spec(name).slot:
                raise ValueError(f"{name} is a slot filled from outside; it cannot be searched")
        if not self.strategies:
            raise ValueError("a search needs at least one strategy")

    def knobs(self) -> dict[str, Knob]:
        """Every knob by flat name (the switches and weights excepted)."""
        out = {knob.field: knob for knob in ENGINE_KNOBS + BLEND_KNOBS if knob.field not in _FIXED_MIX_ONLY}
        for name in self.strategies:
            for knob in spec(name).knobs:
                out[spec(name).flat(knob.field)] = knob
        return out

    def sample(self, trial: Any) -> Candidate:
        """The point an Optuna ``trial`` proposes (define-by-run: a strategy's knobs only while it is on)."""
        values: dict[str, Any] = {}
        for knob in ENGINE_KNOBS + BLEND_KNOBS:
            if knob.field in _FIXED_MIX_ONLY or knob.field == "learn_lr":
                continue
            values[knob.field] = _suggest(trial, knob.field, knob)
        if values.get("learn_weights"):
            lr = next(knob for knob in BLEND_KNOBS if knob.field == "learn_lr")
            values["learn_lr"] = _suggest(trial, "learn_lr", lr)
        weights = []
        for name in self.strategies:
            if not trial.suggest_categorical(f"use:{name}", [True, False]):
                continue
            weights.append((name, trial.suggest_float(f"weight:{name}", _WEIGHT_LOW, _WEIGHT_HIGH, log=True)))
            strategy = spec(name)
            for knob in strategy.knobs:
                flat = strategy.flat(knob.field)
                values[flat] = _suggest(trial, flat, knob)
        if not weights:  # every switch off: the point means the first strategy alone
            weights.append((self.strategies[0], 1.0))
        return Candidate(tuple(weights), values)

    def params_of(self, config: EngineConfig) -> dict[str, Any] | None:
        """The trial parameters that mean ``config`` (to enqueue it as a trial), or ``None`` when it is not
        a point of this space (the fixed mix, a strategy outside the space, a value outside a range)."""
        blend = config.blend
        if blend is None or any(name not in self.strategies for name, weight in blend.weights if weight > 0):
            return None
        flat = {**dataclasses.asdict(config), **dataclasses.asdict(blend), **config.strategies.flat()}
        params: dict[str, Any] = {}
        for knob in ENGINE_KNOBS + BLEND_KNOBS:
            if knob.field in _FIXED_MIX_ONLY or (knob.field == "learn_lr" and not blend.learn_weights):
                continue
            params.update(_param(knob.field, knob, flat[knob.field]))
        weights = {name: weight for name, weight in blend.weights if weight > 0}
        top = max(weights.values())
        for name in self.strategies:
            params[f"use:{name}"] = name in weights
            if name not in weights:
                continue
            params[f"weight:{name}"] = min(_WEIGHT_HIGH, max(_WEIGHT_LOW, weights[name] / top))
            strategy = spec(name)
            for knob in strategy.knobs:
                flat_name = strategy.flat(knob.field)
                params.update(_param(flat_name, knob, flat[flat_name]))
        knobs = self.knobs()
        if any(name in knobs and not knobs[name].contains(value) for name, value in params.items()):
            return None
        return params


def _suggest(trial: Any, name: str, knob: Knob) -> Any:
    if knob.optional and trial.suggest_categorical(f"{name}:off", [False, True]):
        return None
    if knob.kind == "categorical":
        return trial.suggest_categorical(name, list(knob.choices))
    if knob.kind == "int":
        return trial.suggest_int(name, int(knob.low), int(knob.high), log=knob.log)
    return trial.suggest_float(name, float(knob.low), float(knob.high), log=knob.log)


def _param(name: str, knob: Knob, value: Any) -> dict[str, Any]:
    """The trial parameters of one knob holding ``value``."""
    if knob.optional:
        return {f"{name}:off": True} if value is None else {f"{name}:off": False, name: value}
    return {name: value}
