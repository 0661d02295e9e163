"""Another commit of this repository checked out beside this one, for before/after figures in the same run.

On a shared machine two runs an hour apart differ more than most changes do, so the benchmarks that
compare code measure a baseline commit and this checkout alternately, in one run. This gives them the
baseline's tree: a temporary ``git worktree`` that is removed afterwards, whatever happens.

    with baseline_tree("HEAD") as base:   # None when no ref is given
        ...
"""
from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def baseline_tree(ref: str | None) -> Iterator[Path | None]:
    """A checkout of ``ref`` (a temporary worktree) for the ``with`` block; ``None`` when ``ref`` is ``None``."""
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)
