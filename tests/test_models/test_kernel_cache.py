"""The encoder's kernels are compiled in a child process, once per process, so a worker never compiles them itself."""
from __future__ import annotations

import logging
import subprocess

import pytest

import models.kernel_cache as kernel_cache


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(kernel_cache, "_done", False)
    return kernel_cache


def test_a_child_compiles_the_kernels_once_per_process(fresh, monkeypatch) -> None:
    assert fresh.compile_in_a_child()

    def no_second_child(*args, **kwargs):
        raise AssertionError("a second child was started")

    monkeypatch.setattr(subprocess, "run", no_second_child)
    assert fresh.compile_in_a_child()  # asked again: already done, nothing started


def test_a_child_that_fails_is_reported_and_leaves_the_compiling_to_this_process(fresh, monkeypatch, caplog) -> None:
    monkeypatch.setattr(fresh, "_CHILD", "import sys; sys.stderr.write('no numba here'); sys.exit(3)")
    with caplog.at_level(logging.WARNING, logger="models.kernel_cache"):
        assert not fresh.compile_in_a_child()
    assert "no numba here" in caplog.text and "compiles them in this process" in caplog.text
    assert not fresh._done  # the next load tries again


def test_a_child_past_its_time_is_given_up_on(fresh, monkeypatch) -> None:
    monkeypatch.setattr(fresh, "_CHILD", "import time; time.sleep(30)")
    assert not fresh.compile_in_a_child(timeout_s=0.5)
