"""Imports point one way.

Between packages: ``stream`` wires ``online`` and ``models``; those two never import Kafka, Faust or
each other; ``common`` (what both may share) imports only the standard library.

Inside ``stream``: a module imports only from its own unit or from a lower layer (:data:`STREAM_LAYERS`,
lowest first). Units of one layer are siblings and never import each other (``worker`` and ``trainer``
meet only on the wire). Every import counts, also one inside a function or under ``TYPE_CHECKING``.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "online": {"stream", "models", "kafka", "faust", "aiokafka", "torch", "prometheus_client", "mode"},
    "models": {"stream", "online", "kafka", "faust", "aiokafka", "river", "prometheus_client", "mode"},
}

#: ``stream``'s layers, lowest first: (layer name, its units). A unit is a module or a subpackage.
#: ``wire`` sits below ``settings`` because ``Settings.topic_specs`` builds ``wire.topics.TopicSpec``;
#: the contracts need no configuration.
STREAM_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("stream", "stream.errors", "stream.observability")),
    ("wire", ("stream.wire",)),
    ("settings", ("stream.settings",)),
    ("kafka", ("stream.kafka",)),
    ("roles", ("stream.worker", "stream.trainer", "stream.tuner")),
    ("composition root", ("stream.app",)),
    ("commands", ("stream.cli",)),
    ("entry point", ("stream.__main__",)),
]
_RANK = {unit: rank for rank, (_, units) in enumerate(STREAM_LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str | None:
    """The unit of ``stream``'s layers that ``module`` belongs to (the longest listed prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in _RANK:
            return prefix
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``path``; ``from a import b`` gives ``a.b`` when ``a.b``
    is a module or package of ours (so ``from stream import schema`` names ``stream.schema``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                as_path = ROOT.joinpath(*candidate.split("."))
                is_ours = as_path.with_suffix(".py").is_file() or (as_path / "__init__.py").is_file()
                found.append((node.lineno, candidate if is_ours else module))
    return found


def _top_level(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_what_it_must_not(package):
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = {_top_level(name) for _, name in _imports(path)} & FORBIDDEN[package]
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_common_imports_only_the_standard_library():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in sorted((ROOT / "common").rglob("*.py")) for line, name in _imports(path)
                 if _top_level(name) not in sys.stdlib_module_names | {"__future__", "common"}]
    assert not offenders, "common/ may import only the standard library and itself:\n" + "\n".join(offenders)


def test_every_stream_module_has_a_layer():
    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "stream").rglob("*.py"))
               if _unit(_module_name(path)) is None]
    assert not missing, ("these modules of stream/ belong to no layer; add them to STREAM_LAYERS in "
                         f"tests/test_layering.py: {missing}")


def _stream_violations() -> list[str]:
    problems = []
    for path in sorted((ROOT / "stream").rglob("*.py")):
        here = _unit(_module_name(path))
        if here is None:
            continue
        for line, name in _imports(path):
            if _top_level(name) != "stream":
                continue
            there = _unit(name)
            if there is None:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {name}, which belongs to no layer")
            elif there != here and _RANK[there] >= _RANK[here]:
                kind = "a sibling" if _RANK[there] == _RANK[here] else "a higher layer"
                problems.append(
                    f"{path.relative_to(ROOT)}:{line} ({here}, layer '{STREAM_LAYERS[_RANK[here]][0]}') imports "
                    f"{name} ({there}, layer '{STREAM_LAYERS[_RANK[there]][0]}'): {kind}; "
                    f"{here} may import only {here} itself and the layers below it")
    return problems


def test_stream_imports_point_down_its_layers():
    problems = _stream_violations()
    assert not problems, "imports against stream/'s layering (tests/test_layering.py):\n" + "\n".join(problems)


def test_the_checker_names_an_upward_import(tmp_path, monkeypatch):
    """The rule bites: a ``kafka`` module importing the worker is reported with file, line and both layers."""
    for package in ("stream", "stream/kafka", "stream/worker", "stream/wire"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").touch()
    (tmp_path / "stream" / "worker" / "processor.py").write_text("")
    (tmp_path / "stream" / "kafka" / "sender.py").write_text(
        "from stream.worker.processor import Output\nfrom stream import wire\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _stream_violations() == [
        "stream/kafka/sender.py:1 (stream.kafka, layer 'kafka') imports stream.worker.processor (stream.worker, "
        "layer 'roles'): a higher layer; stream.kafka may import only stream.kafka itself and the layers below it"]
