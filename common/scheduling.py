"""CPU scheduling of background work: the idle class, where the system has one."""
from __future__ import annotations

import os


def to_idle_class(pid: int = 0) -> bool:
    """Move ``pid`` (0: the calling thread) to the idle scheduling class (Linux ``SCHED_IDLE``): it then gets
    only CPU that no other process wants, and a waking process takes the core from it at once. Threads
    started later inherit it. No privilege is needed to lower one's own class; False where the system has
    none or refuses (a sandbox that forbids it, a process already gone)."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return False
    return True
