"""VirtualTable: diff updates, sort, filter, cursor, marks, rendering and the 10,000-row case."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region

from gatewaytui.tui.widgets.virtual_table import Column, VirtualTable, natural_key

Row = dict[str, Any]


def _status(row: Mapping[str, Any]) -> Text:
    return Text(row["status"], style="bold green" if row["status"] == "idle" else "yellow")


def columns() -> list[Column]:
    return [
        Column("name", "NAME", lambda r: r["name"], width=16, min_width=10, flex=True),
        Column("status", "STATUS", _status, width=8),
        Column(
            "load",
            "LOAD",
            lambda r: str(r["load"]),
            sort_key=lambda r: r["load"],
            width=5,
            align="right",
        ),
        Column("age", "AGE", lambda r: f"{r['age']}s", width=5, align="right", ticking=True),
        Column("host", "HOST", lambda r: r["host"], width=14, priority=2),
        Column("error", "ERROR", lambda r: r.get("error") or "", width=20, priority=1),
    ]


def make_rows(n: int, *, seed: int = 1) -> dict[str, Row]:
    rng = random.Random(seed)
    return {
        f"w{i}": {
            "name": f"worker-{i}",
            "status": rng.choice(["idle", "working"]),
            "load": rng.randrange(100),
            "age": 0,
            "host": f"host{i % 13}",
            "error": None,
        }
        for i in range(n)
    }


class TableApp(App[None]):
    """One table filling the screen; records every message the table posts."""

    def __init__(self, cols: list[Column] | None = None) -> None:
        super().__init__()
        self.cols = cols or columns()
        self.messages: list[Any] = []

    def compose(self) -> ComposeResult:
        yield VirtualTable(self.cols, empty_text="no workers")

    @property
    def table(self) -> VirtualTable:
        return self.query_one(VirtualTable)

    def on_virtual_table_row_selected(self, message: VirtualTable.RowSelected) -> None:
        self.messages.append(message)

    def on_virtual_table_cursor_moved(self, message: VirtualTable.CursorMoved) -> None:
        self.messages.append(message)

    def on_virtual_table_marks_changed(self, message: VirtualTable.MarksChanged) -> None:
        self.messages.append(message)


def lines(table: VirtualTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.scrollable_content_region.height)]


# --------------------------------------------------------------------------- order


async def test_unsorted_keeps_mapping_order_and_sorts_by_string_number_and_reverse() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = {
            "a": {**make_rows(1)["w0"], "name": "gpu-10", "load": 5},
            "b": {**make_rows(1)["w0"], "name": "GPU-2", "load": 50},
            "c": {**make_rows(1)["w0"], "name": "cpu-1", "load": 7},
        }
        table.set_rows(rows)
        assert table.visible_ids == ("a", "b", "c")
        table.sort_by("name")
        assert table.visible_ids == ("c", "b", "a")  # natural, case-insensitive
        table.sort_by("load")
        assert table.visible_ids == ("a", "c", "b")  # numeric sort_key, not "5" < "50" < "7"
        table.sort_by("load", reverse=True)
        assert table.visible_ids == ("b", "c", "a")
        await pilot.pause()
        assert "LOAD▼" in table.render_line(0).text  # tight column: the arrow always shows
        table.reverse_sort()
        assert table.visible_ids == ("a", "c", "b")
        assert "LOAD▲" in table.render_line(0).text
        table.sort_by("status")
        assert "STATUS ▲" in table.render_line(0).text
        table.sort_by(None)
        assert table.visible_ids == ("a", "b", "c")  # back to arrival order
        with pytest.raises(ValueError):
            table.sort_by("nope")


async def test_o_cycles_sort_columns_and_capital_o_reverses() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        table.set_rows(make_rows(5))
        await pilot.press("o")
        assert (table.sort_column, table.sort_reverse) == ("name", False)
        await pilot.press("o")
        assert table.sort_column == "status"
        await pilot.press("O")
        assert (table.sort_column, table.sort_reverse) == ("status", True)
        for _ in range(len(table.columns) - 1):
            await pilot.press("o")
        assert (table.sort_column, table.sort_reverse) == ("name", False)  # wrapped round


async def test_none_sort_values_go_last_in_both_directions() -> None:
    cols = [
        Column("name", "NAME", lambda r: r["name"]),
        Column("n", "N", lambda r: str(r["n"]), sort_key=lambda r: r["n"]),
    ]
    app = TableApp(cols)
    async with app.run_test(size=(60, 10)):
        table = app.table
        table.set_rows(
            {"a": {"name": "a", "n": 2}, "b": {"name": "b", "n": None}, "c": {"name": "c", "n": 1}}
        )
        table.sort_by("n")
        assert table.visible_ids == ("c", "a", "b")
        table.sort_by("n", reverse=True)
        assert table.visible_ids == ("a", "c", "b")


def test_natural_key() -> None:
    assert sorted(["w10", "W2", "w1"], key=natural_key) == ["w1", "W2", "w10"]
    assert natural_key("abc") == ("abc",)


# --------------------------------------------------------------------------- filter


async def test_filter_regex_smart_case_multiline_and_bad_regex() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = make_rows(20)
        table.set_rows(rows)
        assert table.set_filter(r"worker-1\d") is None
        assert set(table.visible_ids) == {f"w{i}" for i in range(10, 20)}
        assert table.filter_pattern == r"worker-1\d"
        # Smart case: lower-case pattern ignores case, an upper-case letter makes it exact.
        assert table.set_filter("WORKER-3") is None
        assert table.visible_count == 0
        assert table.set_filter("worker-3$") is None  # MULTILINE: $ ends a cell
        assert table.visible_ids == ("w3",)
        # A bad regex is reported and the previous filter stays.
        error = table.set_filter("worker-(")
        assert error is not None and "bad regex" in error
        assert table.visible_ids == ("w3",)
        # Ticking columns (ages) are not searched: rows must not blink as time passes.
        assert table.set_filter("^0s$") is None
        assert table.visible_count == 0
        await pilot.pause()
        assert "no rows match" in table.render_line(1).text
        assert table.set_filter(None) is None
        assert table.visible_count == table.total_count == 20


async def test_filter_applies_to_updates() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)):
        table = app.table
        rows = make_rows(10)
        table.set_rows(rows)
        table.set_filter("^busy$")
        assert table.visible_count == 0
        rows["w4"] = {**rows["w4"], "status": "busy"}
        rows["new"] = {**rows["w1"], "name": "fresh", "status": "busy"}
        table.apply(rows, ["w4", "new"], [])
        assert set(table.visible_ids) == {"w4", "new"}
        rows["w4"] = {**rows["w4"], "status": "idle"}
        table.apply(rows, ["w4"], [])
        assert table.visible_ids == ("new",)


# --------------------------------------------------------------------------- diff updates


async def test_apply_removes_adds_in_sorted_position_and_resorts_changed() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)):
        table = app.table
        rows = {f"w{i}": {**make_rows(1)["w0"], "name": f"n{i}", "load": i * 10} for i in range(5)}
        table.set_rows(rows)
        table.sort_by("load")
        assert table.visible_ids == ("w0", "w1", "w2", "w3", "w4")
        del rows["w2"]
        rows["w9"] = {**rows["w0"], "name": "n9", "load": 25}
        rows["w0"] = {**rows["w0"], "load": 99}
        table.apply(rows, ["w9", "w0"], ["w2"])
        assert table.visible_ids == ("w1", "w9", "w3", "w4", "w0")
        assert table.total_count == 5
        assert table.get_row("w2") is None
        assert table.get_row("w9") == rows["w9"]


async def test_apply_reconciles_when_the_caller_misses_ids() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)):
        table = app.table
        rows = make_rows(5)
        table.set_rows(rows)
        del rows["w1"]
        rows["x"] = {**rows["w0"], "name": "x"}
        table.apply(rows, [], [])  # told nothing: the ids are reconciled against `rows`
        assert set(table.visible_ids) == set(rows)
        table.apply(rows, ["ghost"], [])  # changed but absent: ignored (treated as removed)
        assert set(table.visible_ids) == set(rows)


async def test_set_rows_reload_keeps_cursor_and_marks() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)):
        table = app.table
        rows = make_rows(10)
        table.set_rows(rows)
        table.move_cursor_to("w5")
        table.toggle_mark("w6")
        table.toggle_mark("w7")
        del rows["w7"]
        table.set_rows(rows)
        assert table.cursor_id == "w5"
        assert table.marked == frozenset({"w6"})


# --------------------------------------------------------------------------- cursor and scroll


async def test_cursor_stays_on_its_row_across_apply_and_resort() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = make_rows(50)
        table.set_rows(rows)
        table.sort_by("load")
        table.move_cursor_to("w17")
        await pilot.pause()
        for step in range(5):
            for key in random.Random(step).sample(sorted(rows), 10):
                rows[key] = {**rows[key], "load": random.Random(key + str(step)).randrange(100)}
            rows[f"new{step}"] = {**rows["w0"], "name": f"new{step}", "load": step}
            table.apply(rows, [*rows][-11:], [])
            assert table.cursor_id == "w17"
        table.sort_by("name", reverse=True)
        assert table.cursor_id == "w17"
        await pilot.press("j")
        assert table.cursor_id == table.visible_ids[table.visible_ids.index("w17") + 1]


async def test_cursor_moves_to_neighbour_when_its_row_goes() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = make_rows(10)
        table.set_rows(rows)
        table.move_cursor_to("w4")
        del rows["w4"]
        table.apply(rows, [], ["w4"])
        assert table.cursor_id == "w5"
        table.move_cursor_to("w9")
        del rows["w9"]
        table.apply(rows, [], ["w9"])
        assert table.cursor_id == "w8"  # was last: the one before
        table.set_filter("worker-[0-3]$")
        assert table.cursor_id == "w3"
        table.set_rows({})
        assert table.cursor_id is None
        await pilot.pause()
        assert "no workers" in table.render_line(1).text
        moved = [m.row_id for m in app.messages if isinstance(m, VirtualTable.CursorMoved)]
        assert moved[-5:] == ["w5", "w9", "w8", "w3", None]


async def test_scroll_offset_is_unchanged_by_apply() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = make_rows(500)
        table.set_rows(rows)
        table.sort_by("load")
        table.focus()
        for _ in range(3):
            await pilot.press("pagedown")
        await pilot.pause()
        offset = table.scroll_offset
        cursor = table.cursor_id
        assert offset.y > 0
        rng = random.Random(7)
        for _ in range(5):
            for key in rng.sample(sorted(rows), 50):
                rows[key] = {**rows[key], "load": rng.randrange(100)}
            gone = rng.sample(sorted(k for k in rows if k != cursor), 5)
            for key in gone:
                del rows[key]
            table.apply(rows, rng.sample(sorted(rows), 50), gone)
            await pilot.pause()
            assert table.scroll_offset == offset
            assert table.cursor_id == cursor


async def test_keyboard_navigation_scrolls_only_to_follow_the_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 12)) as pilot:  # 11 row lines under the header
        table = app.table
        table.set_rows(make_rows(100))
        table.focus()
        await pilot.press("down", "j", "k")
        assert table.cursor_id == "w1"
        assert table.scroll_offset.y == 0
        for _ in range(10):
            await pilot.press("down")
        assert table.cursor_id == "w11"
        assert table.scroll_offset.y == 1  # just enough to show it
        await pilot.press("G")
        assert table.cursor_id == "w99"
        await pilot.press("home")
        assert (table.cursor_id, table.scroll_offset.y) == ("w0", 0)
        await pilot.press("pagedown")
        assert table.cursor_id == "w11"
        await pilot.press("end", "pageup")
        assert table.cursor_id == "w88"
        table.move_cursor_to_end()
        assert table.cursor_id == "w99"


# --------------------------------------------------------------------------- marks and select


async def test_space_marks_and_steps_down_enter_posts_row_selected() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = make_rows(10)
        table.set_rows(rows)
        table.focus()
        await pilot.press("space", "space", "k", "space")  # mark w0, w1; back; unmark w1
        assert table.marked == frozenset({"w0"})
        assert table.cursor_id == "w2"
        await pilot.press("enter")
        await pilot.pause()
        selected = [m.row_id for m in app.messages if isinstance(m, VirtualTable.RowSelected)]
        assert selected == ["w2"]
        assert "✓" in table.render_line(1).text  # never colour alone
        assert "✓" not in table.render_line(2).text
        del rows["w0"]
        table.apply(rows, [], ["w0"])
        assert table.marked == frozenset()
        await pilot.pause()
        marks = [m.marked for m in app.messages if isinstance(m, VirtualTable.MarksChanged)]
        assert marks[-1] == frozenset()
        table.toggle_mark("w3")
        table.clear_marks()
        assert table.marked == frozenset()


async def test_click_moves_cursor_and_header_click_sorts() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        table.set_rows(make_rows(10))
        await pilot.click(VirtualTable, offset=(5, 3))
        assert table.cursor_id == "w2"
        await pilot.click(VirtualTable, offset=(3, 0))
        assert table.sort_column == "name"


def test_bindings_have_ids() -> None:
    ids = {binding.id for binding in VirtualTable.BINDINGS}  # type: ignore[union-attr]
    assert {"table.sort", "table.reverse", "table.mark", "table.select"} <= ids
    assert None not in ids


# --------------------------------------------------------------------------- rendering


async def test_rendered_lines_show_values_literally() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 10)) as pilot:
        table = app.table
        rows = make_rows(3)
        rows["w1"]["name"] = "[bold red]evil[/]"
        rows["w2"]["error"] = "line1\nline2\x1b[31m"
        table.set_rows(rows)
        await pilot.pause()
        text = lines(table)
        assert text[0].split() == ["NAME", "STATUS", "LOAD", "AGE", "HOST", "ERROR"]
        assert "worker-0" in text[1] and "host0" in text[1]
        assert "[bold red]evil[/]" in text[2]
        assert "line1\ufffdline2\ufffd[31m" in text[3]
        assert all(len(line) == table.scrollable_content_region.width for line in text)
        # Text cells keep their style; no segment carries markup-derived styling for names.
        strip = table.render_line(2)
        evil = next(seg for seg in strip if "evil" in seg.text)
        assert evil.style is None or not evil.style.bold


async def test_narrow_width_drops_high_priority_columns_flex_takes_the_rest() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.set_rows(make_rows(3))
        await pilot.pause()
        header = table.render_line(0).text.split()
        assert header == ["NAME", "STATUS", "LOAD", "AGE", "ERROR"]  # HOST (priority 2) first
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        app.table.set_rows(make_rows(3))
        await pilot.pause()
        assert app.table.render_line(0).text.split() == ["NAME", "STATUS", "LOAD", "AGE"]
    app = TableApp()
    async with app.run_test(size=(140, 10)) as pilot:
        app.table.set_rows(make_rows(3))
        await pilot.pause()
        header = app.table.render_line(0).text
        # All columns at preferred width, the flex NAME column absorbs the spare width.
        assert header.index("STATUS") - header.index("NAME") > 16 + 1
        assert header.rstrip().endswith("ERROR")


async def test_truncation_uses_an_ellipsis() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 10)) as pilot:
        rows = make_rows(1)
        rows["w0"]["host"] = "a-very-long-host-name.example"
        app.table.set_rows(rows)
        await pilot.pause()
        assert "a-very-long-h…" in app.table.render_line(1).text


# --------------------------------------------------------------------------- repaint economy


def _count_refreshes(table: VirtualTable) -> list[tuple[Region, ...]]:
    calls: list[tuple[Region, ...]] = []
    original = table.refresh

    def refresh(*regions: Region, **kwargs: Any) -> VirtualTable:
        calls.append(regions)
        return original(*regions, **kwargs)

    table.refresh = refresh  # type: ignore[method-assign]
    return calls


async def test_nothing_redrawn_when_nothing_changed() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = make_rows(100)
        table.set_rows(rows)
        table.sort_by("load")
        await pilot.pause()
        calls = _count_refreshes(table)
        misses = table.line_cache_misses
        # Same values in fresh dicts: cells compare equal, so no repaint at all.
        rows = {key: dict(value) for key, value in rows.items()}
        table.apply(rows, list(rows)[:30], [])
        table.tick()  # ages did not change
        await pilot.pause()
        assert calls == []
        assert table.line_cache_misses == misses


async def test_changed_rows_repaint_only_their_lines() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.table
        rows = make_rows(100)
        table.set_rows(rows)  # unsorted: a value change cannot move a row
        await pilot.pause()
        calls = _count_refreshes(table)
        misses = table.line_cache_misses
        rows["w3"] = {**rows["w3"], "host": "elsewhere"}
        rows["w50"] = {**rows["w50"], "host": "off-screen"}
        table.apply(rows, ["w3", "w50"], [])
        assert calls == [(Region(0, 4, table.scrollable_content_region.width, 1),)]
        await pilot.pause()
        assert table.line_cache_misses == misses + 1


async def test_tick_repaints_only_rows_whose_ticking_text_changed() -> None:
    clock = {"now": 0}
    cols = [
        Column("name", "NAME", lambda r: r["name"]),
        Column("age", "AGE", lambda r: f"{(clock['now'] - r['t0']) // 60}m", ticking=True),
    ]
    app = TableApp(cols)
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.table
        table.set_rows({f"r{i}": {"name": f"r{i}", "t0": -i * 30} for i in range(30)})
        await pilot.pause()
        calls = _count_refreshes(table)
        table.tick()
        assert calls == []
        clock["now"] = 30  # rows with an odd index cross a minute boundary
        table.tick()
        assert len(calls) == 1
        assert sorted(region.y for region in calls[0]) == [2, 4, 6, 8]
        await pilot.pause()
        assert table.render_line(2).text.split() == ["r1", "1m"]
        # Off-screen rows are refreshed lazily when they come into view.
        await pilot.press("G")
        await pilot.pause()
        assert table.render_line(9).text.split() == ["r29", "15m"]


async def test_off_screen_rows_render_lazily_and_show_fresh_values() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 12)) as pilot:
        table = app.table
        rows = make_rows(200)
        table.set_rows(rows)
        await pilot.pause()
        calls = _count_refreshes(table)
        misses = table.line_cache_misses
        rows["w150"] = {**rows["w150"], "host": "moved-away"}
        table.apply(rows, ["w150"], [])
        table.tick()  # a stale row must not trip the ticker
        await pilot.pause()
        assert calls == [] and table.line_cache_misses == misses  # off screen: no work
        table.move_cursor_to("w150")
        await pilot.pause()
        assert (
            "moved-away"
            in table.render_line(table.visible_ids.index("w150") - table.scroll_offset.y + 1).text
        )
        # A filter needs every row's text, stale ones included.
        rows["w199"] = {**rows["w199"], "host": "needle"}
        table.apply(rows, ["w199"], [])
        assert table.set_filter("needle") is None
        assert table.visible_ids == ("w199",)


async def test_feeding_before_mount_works() -> None:
    class EarlyApp(TableApp):
        def compose(self) -> ComposeResult:
            table = VirtualTable(self.cols)
            table.sort_by("load", reverse=True)
            table.set_rows(make_rows(30))
            yield table

    app = EarlyApp()
    async with app.run_test(size=(100, 12)) as pilot:
        await pilot.pause()
        table = app.table
        loads = [table.get_row(key)["load"] for key in table.visible_ids]  # type: ignore[index]
        assert loads == sorted(loads, reverse=True)
        assert table.cursor_id == table.visible_ids[0]
        assert "worker-" in table.render_line(1).text


# --------------------------------------------------------------------------- scale


async def test_ten_thousand_rows_and_a_thousand_row_apply() -> None:
    app = TableApp()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.table
        rows = make_rows(10_000)
        table.set_rows(rows)
        table.sort_by("load")
        await pilot.pause()
        assert table.visible_count == 10_000
        assert table.virtual_size.height == 10_001
        rng = random.Random(3)
        keys = rng.sample(sorted(rows), 1_000)
        for key in keys[:900]:
            rows[key] = {**rows[key], "load": rng.randrange(100), "status": "working"}
        for key in keys[900:]:
            del rows[key]
        for i in range(100):
            rows[f"n{i}"] = {**rows[keys[0]], "name": f"n{i}", "load": rng.randrange(100)}
        table.apply(rows, [*keys[:900], *(f"n{i}" for i in range(100))], keys[900:])
        await pilot.pause()
        expected = sorted(rows, key=lambda k: rows[k]["load"])
        loads = [rows[k]["load"] for k in table.visible_ids]
        assert loads == sorted(loads)
        assert set(table.visible_ids) == set(expected)
        assert table.total_count == 10_000
        await pilot.press("G")
        assert table.cursor_id == table.visible_ids[-1]


# --------------------------------------------------------------------------- snapshot


class SnapshotApp(App[None]):
    """A fixed table at 80x24: marks, sort indicator, a styled cell, markup-like names."""

    def compose(self) -> ComposeResult:
        yield VirtualTable(columns(), empty_text="no workers")

    def on_mount(self) -> None:
        table = self.query_one(VirtualTable)
        rows = make_rows(40, seed=5)
        rows["w3"]["name"] = "[bold red]evil[/]"
        rows["w4"]["error"] = "connection reset by peer"
        table.set_rows(rows)
        table.sort_by("load", reverse=True)
        table.toggle_mark("w1")
        table.toggle_mark("w2")
        table.move_cursor_to("w3")


def test_snapshot_80x24(snap_compare: Any) -> None:
    assert snap_compare(SnapshotApp(), terminal_size=(80, 24))
