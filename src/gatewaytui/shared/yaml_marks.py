"""YAML with line numbers: one loader and one locator for every config file we read.

The panel's config and the gateway's `--config` both report each problem as
`file:line:col: key.path: message`; `StrictLoader` rejects duplicate keys (a silently ignored
second `keymap:` or `plugin_options:`), `node_mark` finds where a key path is in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            duplicate = False
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r} (first defined on line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type, unused-ignore]  # untyped without types-PyYAML
)


def node_mark(
    root: yaml.Node | None, loc: tuple[Any, ...], *, at_key: bool = False
) -> yaml.Mark | None:
    """Where `loc` is in the YAML document: its value (or, `at_key`, its key), else the
    closest parent that exists."""
    node = root
    mark = root.start_mark if root is not None else None
    for index, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if getattr(key_node, "value", None) == str(part):
                    last = index == len(loc) - 1
                    mark = key_node.start_mark if last and at_key else value_node.start_mark
                    node = value_node
                    break
            else:
                return mark
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return mark
            node = node.value[part]
            mark = node.start_mark
        else:
            return mark
    return mark


def where(path: Path, mark: yaml.Mark | None) -> str:
    """`file:line:col` (1-based), or just the file when the place is unknown."""
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)


def compose(text: str) -> yaml.Node | None:
    """The node tree of `text` (for `node_mark`), or None if it does not parse."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
