"""The trainer yields the CPU to the serving path: it lowers its own priority at start (``trainer_nice``) and,
on Linux, moves to the idle scheduling class (``trainer_idle``)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stream.settings import Settings


def niceness_after(by: int) -> int:
    code = f"from stream.cli.processes import lower_priority; print(lower_priority({by}))"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def policies_after(idle: bool) -> list[int]:
    """The scheduling policy of the process after ``lower_priority(0, idle)``, then of a thread it starts later."""
    code = (f"import os, threading; from stream.cli.processes import lower_priority; lower_priority(0, {idle}); "
            "seen = [os.sched_getscheduler(0)]; "
            "t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0))); t.start(); t.join(); "
            "print(*seen)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return [int(policy) for policy in out.split()]


def test_the_trainer_lowers_its_priority_by_the_configured_amount() -> None:
    here = os.nice(0)
    assert Settings().encoder.trainer_nice == 10
    assert niceness_after(10) == min(19, here + 10)
    assert niceness_after(0) == here  # 0 leaves it as it is


@pytest.mark.parametrize("value", ["-1", "20"])
def test_a_niceness_outside_0_to_19_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="trainer_nice"):
        Settings().with_strings({"trainer_nice": value})


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="the idle scheduling class is Linux's")
def test_the_trainer_moves_to_the_idle_class_and_so_do_the_threads_it_starts_later() -> None:
    assert Settings().encoder.trainer_idle is True
    assert policies_after(idle=True) == [os.SCHED_IDLE, os.SCHED_IDLE]
    assert policies_after(idle=False) == [os.sched_getscheduler(0)] * 2  # left as it was


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="the idle scheduling class is Linux's")
def test_a_parent_moves_a_child_it_started_to_the_idle_class_before_the_child_has_done_anything() -> None:
    from common.scheduling import to_idle_class

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert to_idle_class(child.pid)
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE
    finally:
        child.kill()
        child.wait()
    assert not to_idle_class(child.pid)  # gone: refused, not raised


# -- the tuner's searches are background work too --------------------------------------------------------------


def test_the_tuners_priority_settings_default_to_yielding_and_refuse_nonsense() -> None:
    search = Settings().search
    assert (search.nice, search.idle) == (10, True)
    for value in ("-1", "20"):
        with pytest.raises(ValueError, match="search_nice"):
            Settings().with_strings({"search_nice": value})


def scheduling_of_a_starting_tuner(tmp_path, *flags: str) -> tuple[int, int]:
    """``(policy, niceness)`` of a ``streamrec tuner`` process once it has lowered itself (or after 20 s)."""
    import time

    command = [sys.executable, "-m", "stream", "tuner", "--metrics-port", "0", "--bootstrap-servers", "127.0.0.1:9",
               "--search-storage", f"sqlite:///{tmp_path}/tuner.db", *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    here = (os.sched_getscheduler(0), os.nice(0))
    try:
        deadline = time.monotonic() + 20
        seen = here
        while time.monotonic() < deadline and process.poll() is None:
            try:
                seen = (os.sched_getscheduler(process.pid), os.getpriority(os.PRIO_PROCESS, process.pid))
            except OSError:
                break
            if seen != here:
                break
            time.sleep(0.01)
        return seen
    finally:
        process.kill()
        process.wait()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="the idle scheduling class is Linux's")
def test_a_starting_tuner_moves_itself_to_the_idle_class_and_lowers_its_priority(tmp_path) -> None:
    policy, niceness = scheduling_of_a_starting_tuner(tmp_path)
    assert policy == os.SCHED_IDLE
    assert niceness == min(19, os.nice(0) + 10)
