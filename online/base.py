"""The shapes everything in ``online/`` agrees on: an interaction, a strategy, a scorer.

An :class:`Interaction` is the validated, Kafka-free form of one user event. A
:class:`Strategy` is anything that learns from interactions and scores candidate
items for a user. Strategies are duck-typed (a ``Protocol``) so that the heavy
encoder in ``models/`` can satisfy it without importing this package.

:class:`Tunable` gives our own strategies river's hyper-parameter semantics:
constructor arguments are the hyper-parameters, :meth:`Tunable.clone` builds a
fresh copy, and run-time changes go only through :meth:`Tunable.mutate`, which
refuses anything outside ``_mutable_attributes`` (``river.base.Base.mutate``).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable


class Interaction(NamedTuple):
    """One user-item event, already validated.

    ``ts`` is epoch seconds; ``value`` is the event's weight (a rating, a price,
    or 1.0). ``event_id`` is optional and used for de-duplication and for
    matching published lists to the events they answered; ``rec_id`` names the
    published list the user acted on, when the client says so.
    """

    user_id: str
    item_id: str
    ts: float
    type: str = "click"
    value: float = 1.0
    event_id: str | None = None
    rec_id: str | None = None  # the served list this event answers (live bandit feedback), if any


#: ``model_version`` of a list the online models served without any hot-swapped model.
ONLINE_MODEL = "online"


class Ranking(NamedTuple):
    """A ranked list together with what served it: what every engine's ``recommend`` returns.

    The list reports its own provenance so that callers never read it back from the engine
    after the call (a second request may have run meanwhile). ``versions`` holds
    ``(strategy, version)`` for each hot-swapped strategy that weighed in on the list (weight
    above 0 and a version loaded), e.g. ``(("encoder", 3),)``; empty when the online models
    served it alone. ``arm`` names the tuner's arms behind the list (``None`` without a tuner).
    ``pool`` is the scored pool the list was cut from, when the caller asked for it
    (``keep_pool``): what the online tuner scores other weights and models on.

    >>> Ranking([("a", 1.0)]).model_version, Ranking([], (("encoder", 3),)).model_version
    ('online', 'encoder-v3')
    """

    items: list[tuple[str, float]]
    versions: tuple[tuple[str, int], ...] = ()
    arm: str | None = None
    pool: Pool | None = None

    @property
    def model_version(self) -> str:
        """What served the list, as ``recommendations.model_version`` names it: ``"online"`` when no
        hot-swapped model weighed in, else ``"<strategy>-v<N>"`` per model joined by ``+``
        (today only the encoder: ``"encoder-v3"``, matching its checkpoint's name)."""
        return "+".join(f"{name}-v{version}" for name, version in self.versions) or ONLINE_MODEL


class Pool(NamedTuple):
    """The candidates of one request with every strategy's raw scores: ``columns[j][i]`` is
    strategy ``names[j]``'s score of ``items[i]``."""

    items: list[str]
    names: list[str]
    columns: list


@runtime_checkable
class Engine(Protocol):
    """What the workers, ``streamrec eval`` and the benchmarks run: the one engine contract.

    ``learn_many`` learns a micro-batch in order (each event first scored against the list
    last served to its user); ``recommend`` returns the user's top ``k`` (the engine's
    default when ``None``), never an item the user touched or one in ``exclude``, as a
    :class:`Ranking` that says what served it. ``record`` remembers the list as the one
    served (prequential hit rate, the tuner's rewards); ``rec_id`` names it for engines that
    learn from feedback on named lists. Implemented by :class:`online.engine.StreamingRecommender`
    and :class:`online.tuning.TunedRecommender`; the contract suite runs over both.
    """

    def learn_many(self, interactions: Sequence[Interaction]) -> None: ...

    def recommend(self, user_id: str, k: int | None = None, exclude: Iterable[str] = (),
                  record: bool = True, rec_id: str | None = None) -> Ranking: ...

    def stats(self) -> dict[str, float]: ...


@runtime_checkable
class Strategy(Protocol):
    """A recommendation strategy: learns a micro-batch, scores candidates.

    ``score`` returns one float per candidate, higher is better; it must never
    raise for an unknown user or item (score them 0.0 or by a prior instead).
    ``history`` is the user's recent items, oldest first, as the engine keeps them.

    A strategy may also offer ``scorer(user_id, history) -> Scorer``: one object
    that answers both ``candidates`` and ``score`` for the same request, so work
    shared by the two (co-occurrence votes, a user's factor product) is done once.
    :func:`scorer_for` falls back to the two protocol methods when it is absent.
    """

    name: str

    def learn_many(self, interactions: Sequence[Interaction]) -> None: ...

    def candidates(self, user_id: str, history: Sequence[str], n: int) -> list[str]: ...

    def score(self, user_id: str, history: Sequence[str], items: Sequence[str]) -> list[float]: ...


class Scorer(Protocol):
    """Per-request view of a strategy for one user (see :meth:`Strategy.scorer`).

    ``candidates`` returns up to ``n`` items, best first, none of them in ``exclude``.
    A scorer over a hot-swapped model may also carry ``version`` (an int): the version
    that answers this request, which the blend reports in :class:`Ranking`.
    """

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]: ...

    def score(self, items: Sequence[str]) -> Sequence[float]: ...


class Excluded:
    """Items a scorer must not propose: two collections, tested without copying either into one.

    The blend's "fill" pooling excludes what the user touched *and* what is already pooled; a
    user's seen set can hold thousands of items, so copying it per request costs more than the
    request. A scorer that walks many items may unpack :attr:`first` and :attr:`second` and
    test both directly; anything else just uses ``in``.
    """

    __slots__ = ("first", "second")

    def __init__(self, first: Collection[str], second: Collection[str]) -> None:
        self.first, self.second = first, second

    def __contains__(self, item: object) -> bool:
        return item in self.first or item in self.second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __iter__(self) -> Iterator[str]:
        yield from self.first
        yield from self.second


class _ProtocolScorer:
    """Adapter: a :class:`Scorer` over a strategy that only has the protocol methods."""

    __slots__ = ("strategy", "user_id", "history")

    def __init__(self, strategy: Strategy, user_id: str, history: Sequence[str]) -> None:
        self.strategy, self.user_id, self.history = strategy, user_id, history

    def candidates(self, n: int, exclude: Collection[str] = ()) -> list[str]:
        if not exclude:
            return list(self.strategy.candidates(self.user_id, self.history, n))
        wider = self.strategy.candidates(self.user_id, self.history, n + min(len(exclude), 4 * n))
        return [item for item in wider if item not in exclude][:n]

    def score(self, items: Sequence[str]) -> Sequence[float]:
        return self.strategy.score(self.user_id, self.history, items)


def scorer_for(strategy: Strategy, user_id: str, history: Sequence[str]) -> Scorer:
    """The strategy's own ``scorer`` if it has one, else an adapter over the protocol."""
    make = getattr(strategy, "scorer", None)
    if callable(make):  # an attribute that merely holds a model (not a method) is not one
        return make(user_id, history)
    return _ProtocolScorer(strategy, user_id, history)


class Tunable:
    """Hyper-parameters as constructor arguments; ``clone``; ``mutate`` through a whitelist.

    Subclasses store every ``__init__`` argument under the same attribute name
    and list the ones that may change while running in ``_mutable_attributes``.

    Examples
    --------
    >>> class Toy(Tunable):
    ...     _mutable_attributes = frozenset({"lr"})
    ...     def __init__(self, lr=0.1, dim=8):
    ...         self.lr, self.dim = lr, dim
    >>> toy = Toy(lr=0.5)
    >>> toy.mutate({"lr": 0.2}); toy.lr
    0.2
    >>> toy.mutate({"dim": 4})
    Traceback (most recent call last):
    ...
    ValueError: 'dim' is not a mutable attribute of Toy (mutable: lr)
    >>> toy.clone().lr, toy.clone({"dim": 2}).dim
    (0.2, 2)
    """

    _mutable_attributes: frozenset[str] = frozenset()

    def _get_params(self) -> dict[str, Any]:
        """Constructor arguments of this instance, read back from its attributes."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name, p in sig.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def clone(self, new_params: Mapping[str, Any] | None = None):
        """A fresh, untrained instance with the same (or changed) hyper-parameters."""
        params = self._get_params()
        params.update(new_params or {})
        return type(self)(**params)

    def mutate(self, new_attrs: Mapping[str, Any]) -> None:
        """Change whitelisted hyper-parameters in place; refuses the rest.

        Values are checked first, so a refused call changes nothing.
        """
        for key, value in new_attrs.items():
            if key not in self._mutable_attributes:
                allowed = ", ".join(sorted(self._mutable_attributes)) or "none"
                raise ValueError(f"{key!r} is not a mutable attribute of {type(self).__name__} "
                                 f"(mutable: {allowed})")
            self._check_mutation(key, value)
        for key, value in new_attrs.items():
            setattr(self, key, value)

    def _check_mutation(self, key: str, value: Any) -> None:
        """Validate one new value (override to add rules); numbers must be finite."""
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise ValueError(f"{key} must be finite (got {value})")

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """Parameter sets the contract suite builds this class with (small and fast)."""
        yield {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({params})"
