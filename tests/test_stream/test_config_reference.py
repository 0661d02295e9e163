"""docs/configuration.md is generated from the settings tree and must not drift from it."""
from __future__ import annotations

from pathlib import Path

from stream.cli.config_reference import render
from stream.settings import Settings, leaves, sections

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_in_exactly_one_section():
    placed = [leaf.flat for _, _, section in sections() for leaf in section]
    assert placed == [leaf.flat for leaf in leaves()] and len(placed) == len(set(placed))
    assert [name for name, _, _ in sections()] == list(Settings.__dataclass_fields__)


def test_the_committed_reference_is_what_the_code_generates():
    assert REFERENCE.read_text() == render(), (
        "docs/configuration.md is stale: run `python -m stream.cli.config_reference > docs/configuration.md`")


def test_the_reference_names_every_setting_and_knob():
    from online.registry import search_space

    text = render()
    for leaf in leaves():
        assert f"| `{leaf.flat}` | `{leaf.path}` | `{leaf.env}` | `{leaf.flag}` |" in text
    for name in search_space():
        if not name.startswith("weight:"):
            assert f"| `{name}` |" in text  # every knob by its flat name
