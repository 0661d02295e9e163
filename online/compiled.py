"""The compiled twins of the fixed mix's hot loops (``online/_fixed_mix.pyx``), when they are built.

``pip install -e .`` builds them (Cython and a C compiler, ``setup.py``). Where the build failed, or
the code runs from a checkout nobody installed, :data:`fixed_mix` is ``None`` and every caller takes
its Python twin: the same lists, slower. ``STREAMREC_PURE_PYTHON=1`` in the environment makes a
process take the Python twins although the compiled ones are there (to compare the two).
"""
from __future__ import annotations

import os
from types import ModuleType


def _python_asked() -> bool:
    return os.environ.get("STREAMREC_PURE_PYTHON", "").strip().lower() in ("1", "true", "yes", "on")


def _load() -> ModuleType | None:
    if _python_asked():
        return None
    try:
        from online import _fixed_mix
    except ImportError:
        return None
    return _fixed_mix


#: ``online._fixed_mix``, or ``None`` where the Python twins run.
fixed_mix: ModuleType | None = _load()


def describe() -> str:
    """One line for logs and ``--help``: which implementation builds the fixed mix's lists."""
    if fixed_mix is not None:
        return "the compiled loops (online._fixed_mix)"
    if _python_asked():
        return "the Python loops (STREAMREC_PURE_PYTHON is set)"
    return ("the Python loops: online._fixed_mix is not built (reinstall with a C compiler, "
            "`pip install -e .`, for faster lists)")
