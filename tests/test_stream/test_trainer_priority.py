"""The trainer yields the CPU to the serving path: it lowers its own priority at start (``trainer_nice``)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stream.settings import Settings


def niceness_after(by: int) -> int:
    code = f"from stream.cli.processes import lower_priority; print(lower_priority({by}))"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def test_the_trainer_lowers_its_priority_by_the_configured_amount() -> None:
    here = os.nice(0)
    assert Settings().encoder.trainer_nice == 10
    assert niceness_after(10) == min(19, here + 10)
    assert niceness_after(0) == here  # 0 leaves it as it is


@pytest.mark.parametrize("value", ["-1", "20"])
def test_a_niceness_outside_0_to_19_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="trainer_nice"):
        Settings().with_strings({"trainer_nice": value})
