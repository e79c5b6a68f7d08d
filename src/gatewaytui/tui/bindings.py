"""Every key binding of the panel, read from the classes that declare them.

The bindings are the one list: the help screen (`?`) shows those with a `tooltip` (what the
key does), grouped by that text; the keymap check knows every id from here. A binding is
found by walking the panel's widget and screen classes (`DOMNode` subclasses defined in
`gatewaytui.tui` with their own `BINDINGS`), so a new one shows up without a second list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from textual.binding import Binding, BindingsMap
from textual.dom import DOMNode

PACKAGE = "gatewaytui.tui."
# Where a class's keys come in the help: the app's first, then tables, views, screens.
_RANK = {"app": 0, "widgets": 1, "views": 2, "screens": 3}
KEY_NAMES = {"escape": "esc", "question_mark": "?", "slash": "/", "colon": ":"}
DETAILS_BACK = "details: back"  # one help row for the back key of every details screen


def panel_classes() -> list[type[DOMNode]]:
    """The panel's classes that declare bindings, in help order (imported ones only: the
    app module imports them all)."""
    found: list[type[DOMNode]] = []
    stack: list[type[DOMNode]] = [DOMNode]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith(PACKAGE) and "BINDINGS" in vars(cls):
            found.append(cls)

    def order(cls: type[DOMNode]) -> tuple[int, str, str]:
        area = cls.__module__.removeprefix(PACKAGE).split(".")[0]
        return (_RANK.get(area, 9), cls.__module__, cls.__qualname__)

    return sorted(set(found), key=order)


def _declared(cls: type[DOMNode]) -> Iterator[Binding]:
    for binding in vars(cls)["BINDINGS"]:
        if isinstance(binding, Binding):
            yield binding


def known_binding_ids() -> frozenset[str]:
    """Every binding id a keymap may name."""
    return frozenset(b.id for cls in panel_classes() for b in _declared(cls) if b.id)


def key_display(key: str) -> str:
    """`escape,q` -> `esc, q` (how the help and the README write keys)."""
    return ", ".join(KEY_NAMES.get(part.strip(), part.strip()) for part in key.split(","))


def live_keys(cls: type[DOMNode], keymap: Mapping[str, str]) -> dict[str, str]:
    """Binding id -> its keys (`esc, q`) with `keymap` applied, as Textual applies it."""
    bindings = BindingsMap(list(_declared(cls)))
    bindings.apply_keymap(dict(keymap))
    keys: dict[str, list[str]] = {}
    for key, on_key in bindings.key_to_bindings.items():
        for binding in on_key:
            if binding.id and key not in keys.setdefault(binding.id, []):
                keys[binding.id].append(key)
    return {binding_id: key_display(",".join(k)) for binding_id, k in keys.items()}


@dataclass
class HelpRow:
    what: str
    keys: list[str]
    ids: list[str]

    @property
    def key_text(self) -> str:
        digits = [k for k in self.keys if k.isdigit()]
        if len(self.keys) > 3 and digits == self.keys and self.keys[-1] == "0":  # 1 … 9, 0
            return f"{self.keys[0]} … {self.keys[-2]}, 0"
        if len(self.keys) > 2 and digits == self.keys:  # 1 … 7
            return f"{self.keys[0]} … {self.keys[-1]}"
        return " / ".join(dict.fromkeys(self.keys))

    @property
    def id_text(self) -> str:
        numbered = [re.fullmatch(r"(.*?)(\d+)", i) for i in self.ids]
        prefixes = {m.group(1) for m in numbered if m}
        if len(self.ids) > 2 and all(numbered) and len(prefixes) == 1:  # app.view_N
            return f"{prefixes.pop()}N"
        return ", ".join(self.ids)


def help_rows(keymap: Mapping[str, str]) -> list[HelpRow]:
    """The help's rows: bindings with a tooltip, one row per tooltip, in help order."""
    rows: dict[str, HelpRow] = {}
    for cls in panel_classes():
        keys = live_keys(cls, keymap)
        for binding in _declared(cls):
            if not binding.tooltip or not binding.id:
                continue
            row = rows.setdefault(binding.tooltip, HelpRow(binding.tooltip, [], []))
            row.keys.append(keys.get(binding.id, key_display(binding.key)))
            row.ids.append(binding.id)
    return list(rows.values())
