"""Read each repeated entry of a large ``collections:`` list once (issue #13).

A generated config declares thousands of collections that differ in their name and little else: the same
``properties:``, ``vectors:`` and ``invertedIndex:`` text again and again.  ``fold`` cuts the list's text
into its items and each item into its top-level entries (``key: value`` and the lines below it), and
leaves out every entry whose exact text an earlier item already holds.  The rest (a fraction of the file)
is parsed and checked as usual; ``Folded.unfold`` then puts each left-out entry back as the very object
its first occurrence was read into.  The same text in the same place (a key of a collection's mapping)
reads as the same value, so this gives the data a whole reading would give.

It applies only where that is plain to see, else ``fold`` answers None and the whole file is read:
- one ``collections:`` line at the file's start of a line, its items at one indentation (1 or more spaces),
  each starting ``- key:``, each of their entries a line ``key:`` two spaces deeper (a simple key), and no
  other line less deep than that;
- every kept entry with balanced brackets and an even number of each quote (no value runs into the next);
- and, once read, every item holds exactly the keys of its kept entries, in order (``unfold`` checks it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_ENTRY_KEY = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_HEAD = b"collections:\n"
# Below this share of the list's text left out, folding saves less than its own cost.
MIN_SAVED = 0.5
# A list whose first items repeat less than that is not a generated one: the rest is not looked at.
SAMPLE_ITEMS = 200
MIN_ITEMS = 16


@dataclass
class Folded:
    """A file's text with repeated collection entries left out, and how to put them back."""

    text: bytes
    # Per item of the list: its entries in order, each (key, None) when kept or (key, earlier item) when left out.
    items: list[list[tuple[str, int | None]]] = field(default_factory=list)

    def unfold(self, data: Any) -> dict[str, Any] | None:
        """The data of the whole file from the data of ``text``, or None when the reading is not the expected one."""
        collections = data.get("collections") if isinstance(data, dict) else None
        if not isinstance(collections, list) or len(collections) < len(self.items):
            return None
        full: list[Any] = []
        for read, entries in zip(collections, self.items, strict=False):
            if not isinstance(read, dict) or list(read) != [key for key, source in entries if source is None]:
                return None  # a value ran on into the next entry, or a key is not the one its line shows
            item: dict[str, Any] = {}
            for key, source in entries:
                if key in item:
                    return None  # a key given twice: the exact loader reports it
                item[key] = read[key] if source is None else full[source][key]
            full.append(item)
        return {**data, "collections": [*full, *collections[len(self.items) :]]}


_NOT_DELIMITERS = bytes(c for c in range(256) if c not in b"[]{}\"'")


def _balanced(piece: bytes) -> bool:
    delimiters = piece.translate(None, _NOT_DELIMITERS)  # most entries have none: a short answer at once
    if not delimiters:
        return True
    counts = [delimiters.count(c) for c in b"[]{}\"'"]
    return counts[0] == counts[1] and counts[2] == counts[3] and counts[4] % 2 == 0 and counts[5] % 2 == 0


def fold(raw: bytes) -> Folded | None:
    """``raw`` with each repeated entry of a collection left out, or None where that does not plainly apply."""
    at = 0 if raw.startswith(_HEAD) else raw.find(b"\n" + _HEAD) + 1
    start = at + len(_HEAD)
    if (at == 0 and not raw.startswith(_HEAD)) or raw.find(b"\n" + _HEAD, start - 1) != -1:
        return None  # no list, or two (the exact loader reports the duplicate key)
    margin = re.compile(rb" *").match(raw, start)
    indent = margin.end() - start if margin else 0
    prefix = b" " * indent + b"- "
    if indent == 0 or not raw.startswith(prefix, start):
        return None
    # Its first items tell whether it repeats itself (a few look-ups): a list of one long item, or of items
    # that differ, is left at once to the whole reading.
    sample_end = start
    for count in range(SAMPLE_ITEMS):
        sample_end = raw.find(b"\n" + prefix, sample_end + 1)
        if sample_end == -1:
            if count < MIN_ITEMS:
                return None  # too few items to gain anything
            break
    if sample_end != -1 and _fold_items(raw[start:sample_end], indent) is None:
        return None  # (a sample that runs past the list's end only makes this guess a rougher one)
    # The list ends at the first line that starts at the margin (another key, a comment, a blank line).
    end_match = re.compile(rb"\n[^ ]").search(raw, start)
    end = end_match.start() if end_match else len(raw) - (1 if raw.endswith(b"\n") else 0)
    found = _fold_items(raw[start:end], indent)
    if found is None:
        return None
    kept, items = found
    region = b"\n".join(kept)
    # A line less deep than an entry that does not start an item (a stray or wrongly indented line) is left to the
    # whole reading: what it means may depend on what stands before it.  (The left-out entries are kept ones' copies.)
    if re.compile(rb"\n(?!" + prefix + rb"| {" + str(indent + 2).encode() + rb"})").search(region):
        return None
    return Folded(raw[:start] + region + raw[end:], items)


def _fold_items(region: bytes, indent: int) -> tuple[list[bytes], list[list[tuple[str, int | None]]]] | None:
    """The entries of a list's items kept (each item's first, and each entry not seen before) and each item's plan;
    None when the list is not laid out plainly, or when less than MIN_SAVED of it repeats."""
    prefix = b" " * indent + b"- "
    # Cut before each item and before each entry of an item (a line two spaces deeper that is not a `- `).
    pieces = re.compile(rb"\n(?=" + prefix + rb"| {" + str(indent + 2).encode() + rb"}[^ \-])").split(region)
    seen: dict[bytes, tuple[str, int]] = {}
    names: dict[bytes, str] = {}  # each key's bytes, checked once
    items: list[list[tuple[str, int | None]]] = []
    kept: list[bytes] = []
    entry_start = indent + 2
    for piece in pieces:
        first = piece.startswith(prefix)
        if not first:
            found = seen.get(piece)
            if found is not None:
                items[-1].append(found)
                continue
            if not items:
                return None
        colon = piece.find(b":", entry_start)
        if colon == -1:
            return None
        written = piece[entry_start:colon]
        key = names.get(written)
        if key is None:
            if _ENTRY_KEY.fullmatch(written) is None:
                return None
            key = names[written] = written.decode()
        if piece[colon + 1 : colon + 2] not in (b" ", b"\n", b"") or (piece.translate(None, _NOT_DELIMITERS) and not _balanced(piece)):
            return None
        if first:
            items.append([(key, None)])
        else:
            seen[piece] = (key, len(items) - 1)
            items[-1].append((key, None))
        kept.append(piece)
    if len(region) - sum(map(len, kept)) < MIN_SAVED * len(region):
        return None
    return kept, items
