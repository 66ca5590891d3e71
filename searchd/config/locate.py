"""Positions for a file read fast, found only when an issue asks for one (issue #13).

A file read fast (``fastload.py``) has no positions.  Reading a whole large file again exactly, only to
place one issue, costs about 2 CPU s per 4 MB of dense YAML.  An issue inside a collection needs the
positions of that collection only: ``ItemLocator`` cuts the item out of the ``collections:`` list, reads
it alone with the exact loader (a few hundred bytes) and shifts its lines by where it starts.  That gives
the positions a whole exact reading gives, because the item is read by the same loader and nothing in a
plain file (no anchors, aliases or merge keys: ``fastload._plain_source``) reaches across items; and the
item read alone must build the very data the fast reading gave it, or the whole file is read exactly.

It answers False (read the whole file exactly) for a path outside the list, and for a list it cannot cut
plainly: one ``collections:`` line at a line's start, items at one indentation of 1 or more spaces, each
starting ``- ``, up to the first line at the margin (another key, a comment, a blank line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from searchd.config.loader import Locator, PathKey, _Builder
from searchd.config.yamlsafe import YamlLimits, YamlRefused, compose

_HEAD = b"collections:\n"
_LIST_END = re.compile(rb"\n[^ ]")


class ItemLocator:
    """The lazy locator (``Locator.lazy``) of one file read fast."""

    def __init__(self, raw: bytes, file: str, environ: Mapping[str, str], data: Mapping[str, Any]) -> None:
        self.raw, self.file, self.environ, self.data = raw, file, environ, data
        self._items: tuple[int, list[int], int] | None = None  # the head's line, each item's start, the list's end
        self._cut_done = False
        self._located: set[int] = set()

    def __call__(self, locator: Locator, path: PathKey) -> bool:
        items = self._cut() if path and path[0] == "collections" else None
        if items is None:
            return False
        head_line, starts, end = items
        if len(path) == 1:
            locator.positions[("collections",)] = (self.file, head_line, 1)  # where the exact loader puts a block value: at its key
            return True
        index = path[1]
        if not isinstance(index, int) or not 0 <= index < len(starts):
            return False
        if index not in self._located:
            stop = starts[index + 1] - 1 if index + 1 < len(starts) else end
            positions = self._read_item(index, starts[index], stop)
            if positions is None:
                return False
            locator.positions.update(positions)
            self._located.add(index)
        return True

    def _cut(self) -> tuple[int, list[int], int] | None:
        if self._cut_done:
            return self._items
        self._cut_done = True
        raw = self.raw
        at = 0 if raw.startswith(_HEAD) else raw.find(b"\n" + _HEAD) + 1
        if at == 0 and not raw.startswith(_HEAD):
            return None
        start = at + len(_HEAD)
        if raw.find(b"\n" + _HEAD, start - 1) != -1:
            return None  # two lists: the whole reading says which one counts
        indent = len(raw[start : start + 200]) - len(raw[start : start + 200].lstrip(b" "))
        prefix = b" " * indent + b"- "
        if indent == 0 or not raw.startswith(prefix, start):
            return None
        found = _LIST_END.search(raw, start)
        end = found.start() if found else len(raw)
        starts = [start, *(match.start() + 1 for match in re.compile(b"\n" + re.escape(prefix)).finditer(raw, start, end))]
        self._items = (raw.count(b"\n", 0, at) + 1, starts, end)
        return self._items

    def _read_item(self, index: int, start: int, stop: int) -> dict[PathKey, tuple[str, int, int]] | None:
        """The positions of item ``index`` (its text is ``raw[start:stop]``), or None when reading it alone differs."""
        collections = self.data.get("collections")
        if not isinstance(collections, list) or index >= len(collections):
            return None
        try:
            node = compose(self.raw[start:stop].decode("utf-8"), YamlLimits())
        except (YamlRefused, yaml.YAMLError, UnicodeDecodeError):
            return None
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 1:
            return None
        builder = _Builder(self.file, self.environ)
        if builder.build(node.value[0], ("collections", index)) != collections[index] or builder.issues:
            return None
        offset = self.raw.count(b"\n", 0, start)  # lines before the item
        return {path: (file, line + offset, column) for path, (file, line, column) in builder.locator.positions.items()}
