# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The hot loops of building a list and of learning item pairs, compiled (Cython).

A list of the fixed mix cost ~70-90 µs interpreted, almost all of it interpreter work per candidate (a
dict look-up, a float, a tuple) over the ~20-70 candidates of one list; learning and applying item pairs
is the same kind of work per pair. The same steps compiled against the same Python dicts and lists skip
the interpreter without changing what a model stores. Each function here does the operations of its
Python twin in the same order:

- lists: :meth:`online.sequential.NextItem.strongest` and ``votes``,
  :meth:`online.popularity.DecayedPopularity.relative_scores`, the leaderboard walk of
  :meth:`online.popularity.PopularityScorer.leading` and ``candidates``, the ranking of
  :meth:`online.blend.Blend._votes_then_popular`;
- pairs: :meth:`online.sequential.NextItem.learn_pairs`, ``learn_many`` and ``add_pairs``.

The float operations are the same too (IEEE doubles, no contraction into fused multiply-adds: built with
``-ffp-contract=off``; sums the twins take with ``sum()`` are taken with ``sum()``), so lists and tables are the
same bit for bit (``tests/test_online/test_compiled_fixed_mix.py``). What is left per candidate is the hash
look-ups themselves; going further needs item numbers instead of strings in the models (ARCHITECTURE.md).

Used through :mod:`online.compiled`, which falls back to the Python twins when this module is not built.
"""
from cpython.array cimport array, clone
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from cpython.dict cimport PyDict_Next
from cpython.float cimport PyFloat_AsDouble
from cpython.object cimport Py_EQ, PyObject, PyObject_RichCompareBool
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc
from operator import itemgetter

_count = itemgetter(1)
cdef array _DOUBLES = array("d")  # what a cache entry's shares are cloned from


cpdef list strongest(dict top, dict mass, object followers, object item_id, double slack, Py_ssize_t vote_top):
    """``NextItem.strongest``: the cached followers while the table's weight is within ``slack`` of it, else rebuilt."""
    cdef tuple entry = _entry(top, mass, followers, item_id, slack, vote_top)
    if entry is None:
        return []
    cdef tuple items = <tuple>entry[1]
    cdef array shares = <array>entry[2]
    return [(items[i], shares.data.as_doubles[i]) for i in range(len(items))]


cdef tuple _entry(dict top, dict mass, object followers, object item_id, double slack, Py_ssize_t vote_top):
    """The item's cache entry ``(weight, followers, shares)``, rebuilt when stale; ``None`` when it has none."""
    cdef object cached = top.get(item_id)
    cdef object weight = mass.get(item_id)
    if cached is not None and weight is not None and weight <= (<tuple>cached)[0] * slack:
        return <tuple>cached
    table = followers.get(item_id)
    if not table:
        return None
    cdef tuple built = _top_of(<dict>table, vote_top)
    if built is None:
        return None
    entry = (weight, built[0], built[1])
    top[item_id] = entry
    return entry


cdef tuple _top_of(dict table, Py_ssize_t vote_top):
    """``sorted(table.items(), key=count, reverse=True)[:vote_top]`` with each count over the first, as
    ``(followers, shares)`` (``None`` when the first is not above 0), without a tuple per follower: the table's
    order is kept among equal counts."""
    cdef Py_ssize_t n = len(table), size = 0, at, i
    cdef Py_ssize_t cap = min(n, vote_top)
    cdef double* counts = <double*>malloc((cap + 1) * sizeof(double))
    # borrowed from the table, which nothing changes until the tuple below holds them
    cdef PyObject** keys = <PyObject**>malloc((cap + 1) * sizeof(PyObject*))
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    cdef double count, best
    cdef tuple items
    cdef array shares
    if counts == NULL or keys == NULL:
        free(counts)
        free(keys)
        raise MemoryError()
    try:
        while PyDict_Next(table, &pos, &key, &value):
            count = PyFloat_AsDouble(<object>value)
            if count != count:  # NaN: no order to reproduce here, the general sort decides
                return _top_by_sorting(table, vote_top)
            if size == cap and not count > counts[size - 1]:
                continue  # (an equal count comes after the ones before it: past the end too)
            at = size if size < cap else cap - 1  # (full: the last one drops out)
            while at > 0 and counts[at - 1] < count:
                counts[at] = counts[at - 1]
                keys[at] = keys[at - 1]
                at -= 1
            counts[at] = count
            keys[at] = key
            if size < cap:
                size += 1
        best = counts[0]
        if not best > 0:
            return None
        items = PyTuple_New(size)
        shares = clone(_DOUBLES, size, False)
        for i in range(size):
            Py_INCREF(<object>keys[i])
            PyTuple_SET_ITEM(items, i, <object>keys[i])
            shares.data.as_doubles[i] = counts[i] / best
        return (items, shares)
    finally:
        free(counts)
        free(keys)


cdef tuple _top_by_sorting(dict table, Py_ssize_t vote_top):
    cdef list ranked = sorted(table.items(), key=_count, reverse=True)[:vote_top]
    cdef double best = (<tuple>ranked[0])[1]
    if not best > 0:
        return None
    return (tuple([pair[0] for pair in ranked]), array("d", [<double>pair[1] / best for pair in ranked]))


cdef int _allocated(void* first, void* second, void* third) except -1:
    """Raise ``MemoryError`` when one of three buffers just allocated is missing, after freeing the others."""
    if first == NULL or second == NULL or third == NULL:
        free(first)
        free(second)
        free(third)
        raise MemoryError()
    return 0


cdef struct _Vote:
    PyObject* item     # borrowed from a cache entry, which the call holds
    Py_hash_t hash
    Py_ssize_t order   # where its sum is in ``sums`` (-1: excluded)


cpdef dict votes(dict top, dict mass, object followers, object history, Py_ssize_t lookback, double decay,
                 double slack, Py_ssize_t vote_top, object exclude):
    """``NextItem.votes``: the user's last ``lookback`` items vote, the i-th most recent with ``decay ** i``
    (``top``, ``mass``, ``followers`` and ``slack`` as :func:`strongest` takes them).

    The sums are kept in C, in a small open-addressing table found by each item's hash (then by identity, then
    by equality, as a dict finds a key), and each item is tested against ``exclude`` once: the dict is made at
    the end, one float per candidate, in the order the twin inserts them, with the twin's additions in its
    order."""
    recent = history[-lookback:]
    cdef Py_ssize_t n_recent = len(recent), i, j, k, n, size = 1, mask, at, n_sums = 0
    cdef list entries = []
    cdef tuple entry, items
    cdef array shares
    cdef Py_ssize_t visits = 0
    for i in range(n_recent - 1, -1, -1):
        entry = _entry(top, mass, followers, recent[i], slack, vote_top)
        entries.append(entry)  # (held: the table below borrows the followers' strings from them)
        if entry is not None:
            visits += len(<tuple>entry[1])
    if visits == 0:
        return {}
    while size < 2 * visits:
        size <<= 1
    mask = size - 1
    cdef _Vote* table = <_Vote*>malloc(size * sizeof(_Vote))
    cdef double* sums = <double*>malloc(visits * sizeof(double))
    cdef PyObject** order = <PyObject**>malloc(visits * sizeof(PyObject*))
    cdef double weight = 1.0, share
    cdef bint first_votes
    cdef PyObject* item
    cdef Py_hash_t h
    cdef dict out
    _allocated(table, sums, order)
    try:
        for at in range(size):
            table[at].item = NULL
        for j in range(len(entries)):
            entry = <tuple>entries[j]
            first_votes = n_sums == 0  # the twin's "if out:", at the start of each voting item
            if entry is not None:
                items = <tuple>entry[1]
                shares = <array>entry[2]
                n = len(items)
                for k in range(n):
                    item = <PyObject*>items[k]
                    h = hash(<object>item)
                    at = h & mask
                    while table[at].item != NULL:
                        if table[at].item == item or (table[at].hash == h
                                                      and PyObject_RichCompareBool(<object>table[at].item,
                                                                                   <object>item, Py_EQ) == 1):
                            break
                        at = (at + 1) & mask
                    if table[at].item == NULL:  # the first vote for this item
                        table[at].item = item
                        table[at].hash = h
                        if <object>item in exclude:
                            table[at].order = -1
                            continue
                        table[at].order = n_sums
                        order[n_sums] = item
                        share = shares.data.as_doubles[k]
                        if first_votes:  # (0.0 + x is x for the votes, never negative: taken as they are)
                            sums[n_sums] = share if weight == 1.0 else weight * share
                        else:
                            sums[n_sums] = 0.0 + weight * share
                        n_sums += 1
                    elif table[at].order >= 0:
                        sums[table[at].order] = sums[table[at].order] + weight * shares.data.as_doubles[k]
            weight *= decay
        out = {}
        for i in range(n_sums):
            out[<object>order[i]] = sums[i]
        return out
    finally:
        free(table)
        free(sums)
        free(order)


cpdef list relative(list items, dict index, object scores, double best):
    """``DecayedPopularity.relative_scores``: each item's score (``scores``, a C-contiguous float64 array, at the
    item's ``index``) over ``best``; 0 for an unknown item or when ``best`` is not above 0. The Python twin
    remembers the values of a micro-batch in a dict, because reading a numpy array one item at a time costs more
    there than a dict look-up; here the read is the cheaper of the two."""
    cdef Py_ssize_t n = len(items), i, at, length
    cdef list out = [0.0] * n
    cdef object slot
    cdef Py_buffer view
    if not best > 0 or n == 0:
        return out
    PyObject_GetBuffer(scores, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    try:
        if view.itemsize != sizeof(double) or view.format == NULL or view.format[0] != b'd':
            raise TypeError("scores must be a float64 array")
        length = view.len // sizeof(double)
        for i in range(n):
            slot = index.get(items[i])
            if slot is not None:
                at = slot
                if at < 0 or at >= length:
                    raise IndexError(f"slot {at} is outside the scores")
                out[i] = (<double*>view.buf)[at] / best
        return out
    finally:
        PyBuffer_Release(&view)


cpdef tuple walk(list board, list items, object first, object second, Py_ssize_t take):
    """The leaderboard walk of ``PopularityScorer.leading``: the first ``take`` items in neither collection,
    and how many slots were walked to find them."""
    cdef list out = []
    cdef Py_ssize_t walked = 0, n = len(board)
    cdef object item
    for walked in range(n):
        item = items[<Py_ssize_t>board[walked]]
        if item not in first and item not in second:
            out.append(item)
            if len(out) == take:
                return out, walked + 1
    return out, n


cdef void _stable_descending(Py_ssize_t* order, double* key, Py_ssize_t n) noexcept:
    """Sort ``order[:n]`` by ``key`` descending, ties in their current order (what ``list.sort(reverse=True)`` does)."""
    cdef Py_ssize_t i, j, moving
    for i in range(1, n):
        moving = order[i]
        j = i
        while j > 0 and key[order[j - 1]] < key[moving]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = moving


cpdef object rank(dict votes, list popular, list relative, double w_votes, double w_pop, Py_ssize_t k):
    """``Blend._votes_then_popular``'s ranking: the votes best first (ties as cast), then the popular ones; each
    scored ``w_votes * vote + w_pop * popularity``; the top ``k`` by score (ties in that order). ``None`` when a
    score is not finite."""
    cdef Py_ssize_t n_votes = len(votes), n_popular = len(popular), n = n_votes + n_popular, i, m
    if len(relative) != n:  # (read below without bounds checks)
        raise ValueError(f"{len(relative)} popularity values for {n} candidates")
    cdef double* score = <double*>malloc((n + 1) * sizeof(double))
    cdef double* vote = <double*>malloc((n + 1) * sizeof(double))
    cdef Py_ssize_t* order = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    cdef list items = list(votes)
    cdef double total = 0.0, zero = w_votes * 0.0, value
    cdef list out
    _allocated(score, vote, order)
    try:
        i = 0
        for value in votes.values():
            vote[i] = value
            score[i] = w_votes * value + w_pop * <double>relative[i]
            order[i] = i
            i += 1
        _stable_descending(order, vote, n_votes)
        for i in range(n_popular):
            items.append(popular[i])
            score[n_votes + i] = zero + w_pop * <double>relative[n_votes + i]
            order[n_votes + i] = n_votes + i
        for i in range(n):
            total += score[order[i]]
        if not isfinite(total):
            return None
        _stable_descending(order, score, n)
        m = min(k, n)
        out = [None] * m
        for i in range(m):
            out[i] = (items[order[i]], score[order[i]])
        return out
    finally:
        free(score)
        free(vote)
        free(order)


# -- learning: NextItem's pair loops (``learn_pairs``, ``learn_many``, ``add_pairs``) ------------------------------
# The tables are the model's own: ``followers`` (an OrderedDict of item -> {follower: weight}, oldest table first),
# ``mass`` (item -> its table's total weight), ``top`` (the strongest-followers cache). Each function below does what
# its Python twin in online/sequential.py does, step for step; sums that Python does with ``sum()`` are done with
# ``sum()`` here too (its algorithm differs between Python versions).

cdef class PairTables:
    """A NextItem's tables and the constants its ``_add`` and ``_prune`` need, for the loops below."""
    cdef object followers
    cdef dict mass, top
    cdef Py_ssize_t max_items, cap

    def __init__(self, followers, dict mass, dict top, Py_ssize_t max_items, Py_ssize_t cap):
        self.followers = followers
        self.mass = mass
        self.top = top
        self.max_items = max_items
        self.cap = cap

    cdef dict table_for(self, object prev):
        """``prev``'s table, created (evicting the oldest table at ``max_items``) when it has none."""
        table = self.followers.get(prev)
        if table is None:
            if len(self.followers) >= self.max_items:
                evicted = self.followers.popitem(last=False)[0]  # the oldest inserted item
                del self.mass[evicted]
                self.top.pop(evicted, None)
            table = {}
            self.followers[prev] = table
            self.mass[prev] = 0.0
        return <dict>table

    cdef void add(self, object prev, object item, double weight) except *:
        """``NextItem._add``."""
        cdef dict table = self.table_for(prev)
        found = table.get(item)
        table[item] = (0.0 if found is None else <double>found) + weight
        self.mass[prev] = <double>self.mass[prev] + weight
        if len(table) > 2 * self.cap:
            self.prune(prev, table)

    cdef void prune(self, object prev, dict table) except *:
        """``NextItem._prune``: the table cut back to its ``cap`` strongest followers."""
        kept = sorted(table.items(), key=_count, reverse=True)[: self.cap]
        self.followers[prev] = dict(kept)
        self.mass[prev] = sum([pair[1] for pair in kept])
        self.top.pop(prev, None)


cpdef void learn_pairs(PairTables tables, object pairs) except *:
    """``NextItem.learn_pairs``: each (previous item, item) pair with weight 1, a pair of one item skipped."""
    for prev, item in pairs:
        if prev != item:
            tables.add(prev, item, 1.0)


cpdef double learn_events(PairTables tables, object recent, object interactions, Py_ssize_t window, double decay,
                          double symmetric, double step, double exponent, Py_ssize_t max_users, object collect,
                          bint pairs) except? -1.0:
    """``NextItem.learn_many`` before its rescale: returns the half-life's exponent after the events."""
    cdef list past
    cdef double scale, weight
    cdef Py_ssize_t i
    cdef object two = 2.0
    for event in interactions:
        user = event.user_id
        item = event.item_id
        found = recent.get(user)
        if found is None:
            if len(recent) >= max_users:
                recent.popitem(last=False)
            past = []
            recent[user] = past
        else:
            past = <list>found
            recent.move_to_end(user)
        if pairs:
            scale = <double>(two ** exponent) if step else 1.0  # Python's own float power, as the twin
            weight = 1.0
            for i in range(len(past) - 1, -1, -1):
                if not weight:
                    break
                prev = past[i]
                if prev != item:
                    tables.add(prev, item, weight * scale)
                    if symmetric:
                        tables.add(item, prev, symmetric * weight * scale)
                    if collect is not None:
                        key = (prev, item)
                        had = collect.get(key)
                        collect[key] = (0.0 if had is None else <double>had) + weight
                weight *= decay
        past.append(item)
        if len(past) > window:
            del past[0]
        exponent += step
    return exponent


cpdef void add_pairs(PairTables tables, object prevs, object items, object weights, double scale,
                     double symmetric) except *:
    """``NextItem.add_pairs`` before its clock moves: ``weights[i]`` (times ``scale``) of ``items[i]`` after
    ``prevs[i]``, and with ``symmetric`` (already times ``scale``) the reverse, grouped by the table that grows."""
    cdef dict grouped = {}
    cdef list adds
    cdef dict table
    cdef double total, weight
    for prev, item, value in zip(prevs, items, weights):
        if prev == item:
            continue
        weight = value
        found = grouped.get(prev)
        if found is None:
            grouped[prev] = [(item, weight * scale)]
        else:
            (<list>found).append((item, weight * scale))
        if symmetric:
            found = grouped.get(item)
            if found is None:
                grouped[item] = [(prev, weight * symmetric)]
            else:
                (<list>found).append((prev, weight * symmetric))
    cdef Py_ssize_t limit = 2 * tables.cap, start
    for prev, value in grouped.items():
        adds = <list>value
        start = 0
        existing = tables.followers.get(prev)
        if existing is None:  # a new table (may evict the oldest): the general path
            first = <tuple>adds[0]
            tables.add(prev, first[0], <double>first[1])
            table = <dict>tables.followers[prev]
            start = 1
        else:
            table = <dict>existing
        total = 0.0
        for i in range(start, len(adds)):
            pair = <tuple>adds[i]
            item = pair[0]
            weight = pair[1]
            had = table.get(item)
            table[item] = (0.0 if had is None else <double>had) + weight
            total += weight
        tables.mass[prev] = <double>tables.mass[prev] + total
        if len(table) > limit:
            tables.prune(prev, table)
