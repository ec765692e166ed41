"""README.md's settings table is the one generated from the declarations in server/settings.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from server.settings import Settings, Variable, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- settings-table:start: generated from server/settings.py by scripts/settings-table -->"
END = "<!-- settings-table:end -->"


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs one {START} ... {END} section"
    return text.partition(START)[2].partition(END)[0].removeprefix("\n")


def test_the_readme_table_is_the_generated_one() -> None:
    assert readme_table() == settings_table(), (
        "README.md's settings table differs from the settings declared in server/settings.py: "
        "run scripts/settings-table to rewrite it"
    )


def test_every_field_is_declared_once_and_has_a_row() -> None:
    variables = [field.metadata[Variable] for field in dataclasses.fields(Settings)]
    names = [variable.name for variable in variables]
    table = settings_table()

    assert len(set(names)) == len(names)
    for name in names:
        assert f"| `{name}`" in table
