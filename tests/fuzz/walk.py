"""Every string of a JSON-like tree (keys and values), and copies with one of them replaced."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

Where = tuple[tuple[Any, ...], str]  # (path of keys/indices, "key" | "value")


def strings(tree: Any, skip: frozenset[str] = frozenset()) -> Iterator[Where]:
    """Where every string sits in ``tree``: each mapping key and each string value (``skip``: keys
    left alone, with everything under them)."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), tree)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in skip:
                    continue
                if isinstance(key, str):
                    yield (*path, key), "key"
                stack.append(((*path, key), value))
        elif isinstance(item, list):
            stack.extend(((*path, i), value) for i, value in enumerate(item))
        elif isinstance(item, str):
            yield path, "value"


def replaced(tree: Any, where: Where, text: str) -> Any:
    """A deep copy of ``tree`` with the string at ``where`` replaced by ``text`` (a key keeps its value)."""
    path, kind = where
    tree = copy.deepcopy(tree)
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1] if path else None
    if kind == "key":
        items = [(text if k == last else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)
    elif path:
        parent[last] = text
    else:
        tree = text
    return tree


def label(where: Where) -> str:
    path, kind = where
    return "/".join(str(p) for p in path) + ("(key)" if kind == "key" else "")
