"""The VirtualTable's collaborators without Textual: the row model and the column layout."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rich.text import Text

from gatewaytui.tui.widgets.table_layout import GUTTER, ColumnLayout, fit
from gatewaytui.tui.widgets.table_model import Column, TableModel, compile_filter

COLUMNS = [
    Column("name", "NAME", lambda r: r["name"], width=12, flex=True),
    Column("load", "LOAD", lambda r: str(r["load"]), sort_key=lambda r: r["load"], width=5),
    Column("host", "HOST", lambda r: r["host"], width=10, priority=2),
]


def rows(*loads: int) -> dict[str, dict[str, Any]]:
    return {
        f"w{i}": {"name": f"gpu-{i}", "load": load, "host": "h"} for i, load in enumerate(loads)
    }


def loaded(*loads: int) -> TableModel:
    model = TableModel(COLUMNS)
    data = rows(*loads)
    model.update(data, list(data), (), on_screen=set(), reload=True)
    model.fix_cursor()
    return model


def test_update_keeps_arrival_order_and_puts_the_cursor_on_the_first_row() -> None:
    model = loaded(5, 1, 9)
    assert model.visible == ["w0", "w1", "w2"] and model.cursor_id == "w0"


def test_sort_by_uses_the_cached_sort_values_and_the_cursor_keeps_its_row() -> None:
    model = loaded(5, 1, 9)
    assert model.sort_by("load", reverse=True)
    assert model.visible == ["w2", "w0", "w1"]
    assert not model.fix_cursor() and model.cursor_id == "w0"
    assert not model.sort_by("load", reverse=True)  # no change, nothing to redo
    with pytest.raises(ValueError):
        model.sort_by("nope")


def test_a_diff_that_moves_a_row_resorts_and_a_removed_cursor_row_moves_to_a_neighbour() -> None:
    model = loaded(5, 1, 9)
    model.sort_by("load")
    data = rows(5, 1, 9)
    data["w1"] = {**data["w1"], "load": 99}
    assert model.update(data, ["w1"], (), on_screen=set(), reload=False)
    assert model.visible == ["w0", "w2", "w1"]
    model.place_cursor(1)
    del data["w2"]
    model.update(data, (), ["w2"], on_screen=set(), reload=False)
    assert model.fix_cursor() and model.cursor_id == "w1"


def test_filter_is_smart_case_and_marks_survive_it() -> None:
    model = loaded(5, 1, 9)
    assert model.toggle_mark("w1") and not model.toggle_mark("unknown")
    assert model.set_filter(compile_filter("GPU-1")) is True
    assert model.visible == []  # upper case: case-sensitive
    model.set_filter(compile_filter("gpu-1"))
    assert model.visible == ["w1"] and model.marked == {"w1"}
    model.set_filter(compile_filter(""))
    assert model.visible == ["w0", "w1", "w2"]
    with pytest.raises(re.error):
        compile_filter("(")


def test_cells_are_cleaned_and_a_failing_column_shows_a_question_mark() -> None:
    warnings: list[str] = []
    columns = [
        Column("a", "A", lambda r: r["a"]),
        Column("b", "B", lambda r: r["missing"]),
        Column("c", "C", lambda r: Text("x\ny")),
    ]
    model = TableModel(columns, warn=warnings.append)
    assert model.render_cells({"a": "bad\x1bname"}) == ["bad\ufffdname", "?", Text("x\ufffdy")]
    assert len(warnings) == 1 and "'b'" in warnings[0]


def test_layout_drops_the_highest_priority_number_first_and_flex_takes_the_rest() -> None:
    layout = ColumnLayout(COLUMNS)
    assert layout(80) == ((0, 80 - GUTTER - 10 - 5 - 2), (1, 5), (2, 10))
    assert layout(22) == ((0, 14), (1, 5))  # HOST (priority 2) dropped
    assert layout.column_at(GUTTER, 22) == 0 and layout.column_at(GUTTER + 15, 22) == 1


def test_fit_pads_by_alignment_and_truncates_with_an_ellipsis() -> None:
    assert fit("ab", 4, "right") == "  ab" and fit("ab", 5, "center") == " ab  "
    assert fit("abcdef", 4, "left") == "abc…"
