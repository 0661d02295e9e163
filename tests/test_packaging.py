"""What gets installed: every package of the source tree is in the wheel and in the images."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("common", "stream", "online", "models")


def _packages_on_disk() -> set[str]:
    return {".".join(init.parent.relative_to(ROOT).parts) for top in TOP_LEVEL
            for init in (ROOT / top).rglob("__init__.py") if "__pycache__" not in init.parts}


def test_pyproject_lists_every_package_and_subpackage():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert listed == _packages_on_disk(), "pyproject.toml [tool.setuptools] packages is out of date"


def test_the_console_script_points_at_the_cli():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["streamrec"].partition(":")
    from importlib import import_module

    assert callable(getattr(import_module(module), name))


def test_every_image_copies_every_top_level_package():
    for dockerfile in ("Dockerfile.cpu", "Dockerfile.cuda"):
        text = (ROOT / "deploy" / dockerfile).read_text()
        ignore = (ROOT / "deploy" / f"{dockerfile}.dockerignore").read_text().splitlines()
        for package in TOP_LEVEL:
            assert f"COPY {package} ./{package}" in text, f"deploy/{dockerfile} does not copy {package}/"
            assert f"!{package}/**" in ignore, f"deploy/{dockerfile}.dockerignore leaves {package}/ out"


def test_the_demo_finds_the_alerting_rules_it_hands_prometheus():
    from stream.cli.demo import RULES_FILE

    assert RULES_FILE.is_file(), RULES_FILE
