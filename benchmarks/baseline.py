"""Another commit of this repository checked out beside this one, for before/after figures in the same run.

On a shared machine two runs an hour apart differ more than most changes do, so the benchmarks that
compare code measure a baseline commit and this checkout alternately, in one run. This gives them the
baseline's tree: a temporary ``git worktree`` that is removed afterwards, whatever happens.

A tree with compiled loops (``online/_fixed_mix.pyx``) gets them built in place. Without that, importing
``online._fixed_mix`` from the tree finds nothing there and the editable install's finder hands over this
checkout's module instead: the baseline would run its own Python with this checkout's compiled loops
(which is what ``--baseline-ref`` measured until 2026-12-03). ``list_building.py`` checks which one ran.

    with baseline_tree("HEAD") as base:   # None when no ref is given
        ...
"""
from __future__ import annotations

import subprocess
import sys
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
            if (tree / "online" / "_fixed_mix.pyx").exists():
                built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree,
                                       capture_output=True, text=True)
                if built.returncode != 0:
                    raise RuntimeError(f"building {ref}'s compiled loops failed:\n{built.stderr[-2000:]}")
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)

