"""Pace a replay at the rate the stream's worker sustains, steered by what comes out of it.

A replay faster than the worker serves measures a queue, not the system: the latency grows as long as
the replay lasts. :class:`LatencyPacer` finds the rate instead of being told it, so that the demo's
latency figures are the system's on whatever machine runs it, with whatever else competes for its
cores (the tuner's searches take CPU in bursts).

Each recommendation list the demo consumes says which event it reflects (events are numbered as they
are sent) and how long that event took to become a list. From them the pacer knows, at every tick:

* the *delivered* rate: how fast the events' numbers advance in the lists (what the worker serves);
* the latency: the median over the lists of the last ``window_s``;
* the *base*: the latency with no queue. What lies above it is queueing, and only the replay rate
  causes it. It is measured by *probes*: at the start (at ``start_rate``), then every ``probe_every_s``
  at half the rate, the pacer holds its rate for a moment (``probe_s``, or two latencies if longer)
  and takes the typical (median) latency of the probe's second half as the base, and its highest as
  the noise the target must stay above. So the base follows
  a machine that gets slower or faster, never creeps up with the queue it is meant to measure, and is
  not a lucky minimum that the noise of a busy machine would keep the latency above;
* if it is told what is sent (:meth:`~LatencyPacer.sent`), the age of the oldest event sent after the
  last one reflected: a latency that cannot come back lower, known before its list comes out.

It then sends at the delivered rate, times a factor: more (up to ``1 + growth``) while the latency is
under its target (the base plus ``headroom``), in proportion to the headroom left; less while it is
over, enough to drain the excess within ``drain_s`` (at most half as much). In equilibrium the replay
sends what the worker serves with the latency at its target. Every step is relative to what was
delivered, so the rate climbs by ``1 + growth`` per round trip (slower for a slower system) and a
capacity that drops is followed at once. When nothing comes back although events are being sent, the
silence counts as latency and nothing as delivered: a stalled worker brings the rate to ``min_rate``.

With a tail objective (``tail_s``), the pacer also caps the rate by the tail: the
``tail_quantile`` of the lists of the last ``tail_window_s``. Each time that tail passes ``tail_margin``
of the objective, the cap drops to ``tail_backoff`` of the rate, and the pacer then holds for one tail
window, so the same evidence is not counted twice. Below it, the cap grows by ``tail_growth`` per second.
So the cap backs off fast and grows back slowly. The median controller then finds the capacity, and
the cap keeps the replay where the tail stays inside the objective. An objective that the system misses
even with no queue cannot be met by pacing. So the cap never aims below twice the base: with such an
objective, the pacer keeps the tail within twice the latency with no queue instead.

Nothing is fitted to one worker's speed: only what comes out is observed. One thread may
:meth:`~LatencyPacer.observe` while another asks for the :meth:`~LatencyPacer.rate`.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


class LatencyPacer:
    """A replay rate (events/s) that follows the worker's capacity, from the lists that come out.

    Parameters
    ----------
    start_rate
        Events/s until a first delivered rate is known.
    min_rate, max_rate
        Bounds of the rate.
    tick_s
        How often the rate is revised.
    window_s
        The latest lists over which the median latency is taken at each tick.
    rate_window_s
        The span over which the delivered rate is measured.
    probe_every_s, probe_s
        How often and for how long the base is measured again at half the rate.
    headroom, min_queue_s
        The target latency: the base plus ``max(min_queue_s, headroom * base)``, and at least
        ``min_queue_s`` over the highest median of the last probe (on a busy machine the latency
        jumps with no queue at all; that must not read as one).
    growth
        The most the rate exceeds the delivered rate by, with the latency at its base.
    drain_s
        Over the target, the excess latency is to be drained within this many seconds.
    tail_s, tail_quantile, tail_window_s
        The tail objective (seconds; None: none): the ``tail_quantile`` of the latencies of the last
        ``tail_window_s`` is to stay under it.
    tail_margin, tail_backoff, tail_growth
        The cap drops to ``tail_backoff`` of the rate when the tail passes ``tail_margin * tail_s``,
        and grows by ``tail_growth`` per second while it is under.
    clock
        Monotonic seconds; tests pass a simulated clock.
    """

    def __init__(self, start_rate: float = 200.0, min_rate: float = 20.0, max_rate: float = 1e6,
                 tick_s: float = 0.05, window_s: float = 0.15, rate_window_s: float = 0.25,
                 probe_every_s: float = 5.0, probe_s: float = 0.6, headroom: float = 0.5, min_queue_s: float = 0.02,
                 growth: float = 0.5, drain_s: float = 0.5, tail_s: float | None = None,
                 tail_quantile: float = 99.0, tail_window_s: float = 2.0, tail_margin: float = 0.8,
                 tail_backoff: float = 0.7, tail_growth: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < min_rate <= start_rate <= max_rate:
            raise ValueError("need 0 < min_rate <= start_rate <= max_rate")
        if tail_s is not None and not (tail_s > 0 and 0 < tail_quantile <= 100 and tail_window_s > 0
                                       and 0 < tail_margin <= 1 and 0 < tail_backoff < 1 and tail_growth > 0):
            raise ValueError("a tail objective needs tail_s > 0, 0 < tail_quantile <= 100, tail_window_s > 0, "
                             "0 < tail_margin <= 1, 0 < tail_backoff < 1 and tail_growth > 0")
        self.min_rate, self.max_rate = float(min_rate), float(max_rate)
        self.tick_s, self.window_s, self.rate_window_s = float(tick_s), float(window_s), float(rate_window_s)
        self.probe_every_s, self.probe_s = float(probe_every_s), float(probe_s)
        self.headroom, self.min_queue_s = float(headroom), float(min_queue_s)
        self.growth, self.drain_s = float(growth), float(drain_s)
        self.tail_s = None if tail_s is None else float(tail_s)
        self.tail_quantile, self.tail_window_s = float(tail_quantile), float(tail_window_s)
        self.tail_margin, self.tail_backoff = float(tail_margin), float(tail_backoff)
        self.tail_growth = float(tail_growth)
        self.clock = clock
        self._rate = float(start_rate)
        self._cap = float(max_rate)  # the rate the tail allows
        self._hold_until = 0.0  # no new tail decision before (the window still holds the last one's evidence)
        self._cap_at = 0.0  # the last tick that looked at the tail
        self.tail_latency_s: float | None = None  # at the last tick
        self._lock = threading.Lock()
        # (observed at, latency) of the lists of the last window_s, or of the tail window when that is longer
        self._recent: deque[tuple[float, float]] = deque()
        self._kept_s = self.window_s if self.tail_s is None else max(self.window_s, self.tail_window_s)
        self._probe: tuple[float, float, float] | None = None  # (started, ends, rate) while probing
        self._probed: list[tuple[float, float]] = []  # (tick, median) during the probe
        self._next_probe = 0.0
        self._marks: deque[tuple[float, int]] = deque()  # (tick, progress), for the delivered rate
        self._sent: deque[tuple[int, float]] = deque()  # (event number, sent at) not yet reflected
        self._seen = 0
        self._progress = -1  # the highest event number a list has reflected
        now = clock()
        self._last_tick = now
        self._last_seen = now
        self.latency_s: float | None = None  # at the last tick
        self.base_s: float | None = None
        self.noise_s = 0.0  # the highest median of the last probe: what the latency reaches with no queue
        self.delivered: float | None = None
        self.history: list[tuple[float, float]] = [(now, self._rate)]  # (time, rate) at each revision

    def observe(self, latency_s: float, index: int | None = None, now: float | None = None) -> None:
        """A list arrived, ``latency_s`` after its event, number ``index`` in the order sent (without
        one, each list counts as one more event)."""
        now = self.clock() if now is None else now
        with self._lock:
            self._recent.append((now, max(0.0, float(latency_s))))
            self._last_seen = now
            self._seen += 1
            self._progress = max(self._progress, self._seen - 1 if index is None else int(index))

    def sent(self, index: int, now: float | None = None) -> None:
        """Event number ``index`` is being sent (optional: it lets the pacer see a queue grow before
        the lists that would show it come out, from the age of the oldest event not yet reflected)."""
        now = self.clock() if now is None else now
        with self._lock:
            self._sent.append((int(index), now))

    def rate(self, now: float | None = None) -> float:
        """The rate to send at now (revised at most once per ``tick_s``)."""
        now = self.clock() if now is None else now
        with self._lock:
            if now - self._last_tick >= self.tick_s:
                self._last_tick = now
                self._revise(now)
            return self._rate

    @property
    def target_s(self) -> float | None:
        """The latency the pacer steers to (None before the first list)."""
        if self.base_s is None:
            return None
        return max(self.base_s + max(self.min_queue_s, self.headroom * self.base_s), self.noise_s + self.min_queue_s)

    def _revise(self, now: float) -> None:
        recent = self._recent
        while recent and recent[0][0] < now - self._kept_s:
            recent.popleft()
        since = now - self.window_s
        latest = [v for t, v in recent if t >= since]
        latency = statistics.median(latest) if latest else None
        delivered = self._delivered(now)
        if self._probing(now, latency):
            return
        target = self.target_s
        if target is None or delivered is None:
            return
        silence = now - self._last_seen
        if silence > max(2.0 * target, 2.0 * self.window_s):  # nothing comes back: at least this late
            latency = max(latency or 0.0, silence + self.base_s)
        waiting = self._sent
        while waiting and waiting[0][0] <= self._progress:
            waiting.popleft()
        if waiting:  # the next event to come back will be at least this late
            latency = max(latency or 0.0, now - waiting[0][1])
        if latency is None:
            return
        if latency <= target:
            room = (target - latency) / (target - self.base_s)  # 1 at the base, 0 at the target
            factor = 1.0 + self.growth * min(1.0, room)
        else:
            factor = max(0.5, 1.0 - (latency - target) / self.drain_s)
        self.latency_s, self.delivered = latency, delivered
        self._set(now, min(delivered * factor, self._tail_cap(now)))

    def _tail_cap(self, now: float) -> float:
        """The rate the tail objective allows now (``max_rate`` without one)."""
        if self.tail_s is None:
            return self.max_rate
        since = now - self.tail_window_s
        tail = [v for t, v in self._recent if t >= since]  # _revise kept the tail window
        if len(tail) < 20:  # too few lists for a tail
            return self._cap
        self.tail_latency_s = latency = float(np.percentile(tail, self.tail_quantile))
        limit = max(self.tail_margin * self.tail_s, 2.0 * (self.base_s or 0.0))
        elapsed, self._cap_at = now - self._cap_at, now
        if now < self._hold_until:
            return self._cap
        if latency > limit:
            self._cap = max(self.min_rate, self.tail_backoff * min(self._rate, self._cap))
            self._hold_until = now + self.tail_window_s
        elif self._cap < self.max_rate:
            self._cap = min(self.max_rate, self._cap * (1.0 + self.tail_growth * min(elapsed, 1.0)))
        return self._cap

    def _probing(self, now: float, latency: float | None) -> bool:
        """Measure the base again at half the rate every ``probe_every_s``; True while doing so."""
        if self._probe is None:
            if latency is None or (self.base_s is not None and now < self._next_probe):
                return False
            rate = self._rate if self.base_s is None else max(self.min_rate, 0.5 * self._rate)
            self._probe = (now, now + max(self.probe_s, 2.0 * max(latency, self.latency_s or 0.0) + self.window_s),
                           rate)
            self._probed = []
            self._set(now, rate)
            return True
        started, ends, rate = self._probe
        if latency is not None and now >= (started + ends) / 2:
            self._probed.append((now, latency))
        if now < ends or (self.base_s is None and not self._probed):
            return True
        self._probe = None
        self._next_probe = now + self.probe_every_s
        if self._probed:
            probed = [v for _, v in self._probed]
            self.base_s, self.noise_s = statistics.median(probed), max(probed)
        return False

    def _set(self, now: float, rate: float) -> None:
        self._rate = min(self.max_rate, max(self.min_rate, rate))
        self.history.append((now, self._rate))

    def _delivered(self, now: float) -> float | None:
        """Events/s the lists' numbers advanced by over about ``rate_window_s`` (None until that long)."""
        marks = self._marks
        marks.append((now, self._progress))
        while len(marks) > 1 and marks[1][0] <= now - self.rate_window_s:
            marks.popleft()
        since, before = marks[0]
        if now - since < self.rate_window_s or before < 0:
            return None
        return (self._progress - before) / (now - since)
