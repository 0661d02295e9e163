"""docs/configuration.md is generated from the code and must not drift from it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from stream.cli.config_reference import render
from stream.settings import SECTIONS, Settings

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_in_exactly_one_section():
    placed = [name for _, _, fields in SECTIONS for name in fields]
    assert sorted(placed) == sorted(f.name for f in dataclasses.fields(Settings))
    assert len(placed) == len(set(placed))


def test_the_committed_reference_is_what_the_code_generates():
    assert REFERENCE.read_text() == render(), (
        "docs/configuration.md is stale: run `python -m stream.cli.config_reference > docs/configuration.md`")


def test_the_reference_names_every_environment_variable_and_knob():
    from online.registry import search_space

    text = render()
    for f in dataclasses.fields(Settings):
        assert f"`{f.metadata['env']}`" in text
    for name, knob in search_space().items():
        if not name.startswith("weight:"):
            assert f"`{knob.field}`" in text
