"""Compile the encoder's kernels in a child process, so that a serving process never stalls for it.

``models.kernels`` compiles with numba on its first call and keeps the machine code on disk
(``cache=True``). Compiling runs in Python and holds the GIL: on the 2-vCPU VM the first call took
4.6 s of CPU (later processes load the cache in ~0.6 s). The encoder loader warms the kernels
up in its own thread, but a worker's event loop needs the GIL too. So in a fresh install the first
encoder version used to freeze the worker's lists for seconds (the first demo of a fresh clone:
p99 186 ms, where later runs give ~100 ms).

:func:`compile_in_a_child` does the compiling in a short-lived child process instead, once per
process. The child runs the same warm-up as the loader, so numba writes the same signatures to the
same cache. It runs in the idle scheduling class where there is one (Linux ``SCHED_IDLE``), and the
caller only waits, with the GIL released. The caller's own first call then loads from the cache. If
the child fails or runs past its time, the caller's first call compiles in-process, as before:
slower for the lists, never wrong.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import threading

from common.scheduling import to_idle_class

log = logging.getLogger(__name__)

_lock = threading.Lock()
_done = False

_CHILD = "from models.kernel_cache import compile_here; compile_here()"


def compile_in_a_child(timeout_s: float = 300.0) -> bool:
    """Have a child process compile (or load) the kernels into numba's cache, the first time this
    process asks; True when the kernels are in the cache (or this process has asked before)."""
    global _done
    with _lock:
        if _done:
            return True
        try:
            subprocess.run([sys.executable, "-c", _CHILD], check=True, timeout=timeout_s,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            log.warning("compiling the encoder's kernels in a child failed (%s%s); the first load compiles them "
                        "in this process", type(exc).__name__, f": {detail.decode(errors='replace')[-500:]}"
                        if detail else "")
            return False
        _done = True
        return True


def compile_here() -> None:
    """The child's work: the loader's warm-up step on a tiny encoder, at the idle class where there is one.

    Numba keys its cache by the argument types (dtype, dimensions, layout), not the sizes, so a tiny
    model compiles what every model runs."""
    to_idle_class()
    from models.config import EncoderConfig
    from models.encoder import SequenceEncoder
    from models.incremental import IncrementalStates
    from models.kernels import load_shortlists

    IncrementalStates(SequenceEncoder(EncoderConfig.tiny(n_items=3)).eval()).states([None], [(1,)])
    load_shortlists()
