"""Objects read from a JSONL file or a JSON array file as a stream, each with the line it starts on.

A file is never held in memory whole: JSONL is read line by line, and a JSON array
is cut into its elements by a small scanner that follows strings, escapes and
nesting (a streaming parser such as ijson yields values but not the line each
starts on, and a user fixing a bad object needs that line).  Each element is then
decoded with orjson, so an error inside it is reported at its own line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from searchd.errors import InvalidInput

CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_OUTSIDE = re.compile(rb'["\[\]{},\n]')  # what changes the scanner's state outside a string
_INSIDE = re.compile(rb'["\\\n]')  # … and inside one
_QUOTE, _BACKSLASH, _NEWLINE, _COMMA = 0x22, 0x5C, 0x0A, 0x2C
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


@dataclass(frozen=True)
class Record:
    """One object of a file: decoded (``payload``), or the reason it could not be (``error``)."""

    path: str
    line: int
    raw: bytes  # the object's JSON text, as written to a reject file
    payload: Any = None
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


class FileError(InvalidInput):
    """The file as a whole cannot be read on from ``line`` (a JSON array that is cut short, say)."""

    def __init__(self, path: str, line: int, problem: str, hint: str) -> None:
        super().__init__(f"{path}:{line}: {problem}", hint)
        self.line = line


def decode(path: str, line: int, raw: bytes, column: int = 1) -> Record:
    """``raw`` decoded; it starts at ``line`` and ``column`` of the file."""
    try:
        return Record(path, line, raw, orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        # orjson counts lines and columns within the object: an array element may span several lines.
        at = exc.colno + column - 1 if exc.lineno == 1 else exc.colno
        return Record(path, line + exc.lineno - 1, raw, error=f"not valid JSON: {exc.msg} (column {at})")


class ObjectFile:
    """Iterates the objects of one file; ``position`` is how many bytes have been read (for progress)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.size = path.stat().st_size
        self.position = 0

    def __iter__(self) -> Iterator[Record]:
        with self.path.open("rb") as stream:
            head = stream.read(CHUNK_BYTES)
            # Enough to see the byte-order mark and the first character, which tells the format.
            while (len(head) < len(_BOM) or not head.removeprefix(_BOM).strip()) and (more := stream.read(CHUNK_BYTES)):
                head += more
            body = head.removeprefix(_BOM)
            first = body.lstrip(_WHITESPACE)[:1]
            if first == b"[":
                yield from self._array(stream, body)
            else:
                yield from self._lines(stream, head)
        self.position = self.size

    def _lines(self, stream: IO[bytes], head: bytes) -> Iterator[Record]:
        pending = head  # the first chunk was read to tell the format; lines continue from it

        def lines() -> Iterator[bytes]:
            nonlocal pending
            while True:
                cut = pending.find(b"\n")
                if cut >= 0:
                    line, pending = pending[: cut + 1], pending[cut + 1 :]
                    yield line
                    continue
                more = stream.read(CHUNK_BYTES)
                if not more:
                    if pending:
                        yield pending
                    return
                pending += more

        for number, line in enumerate(lines(), 1):
            self.position += len(line)
            if number == 1:
                line = line.removeprefix(_BOM)
            text = line.lstrip()
            if text.strip():
                yield decode(self.name, number, text.rstrip(), len(line) - len(text) + 1)

    def _array(self, stream: IO[bytes], head: bytes) -> Iterator[Record]:
        """The elements of a top-level JSON array, cut at the commas that are outside strings and nesting."""
        line, depth, in_string, escaped = 1, 0, False, False
        offset = line_start = start_column = 0  # bytes before the chunk; where the current line starts
        state = "before"  # before '[' → first (an element or ']') → inside → next (after ',') … → after ']'
        parts: list[bytes] = []
        start = 0
        chunk = head
        while chunk:
            self.position += len(chunk)
            pos, end = 0, len(chunk)
            while pos < end:
                if state == "inside":
                    if escaped:  # the byte after a backslash never ends a string
                        parts.append(chunk[pos : pos + 1])
                        escaped, pos = False, pos + 1
                        continue
                    found = (_INSIDE if in_string else _OUTSIDE).search(chunk, pos)
                    if found is None:
                        parts.append(chunk[pos:])
                        break
                    at = found.start()
                    byte = chunk[at]
                    if byte == _NEWLINE:
                        line, line_start = line + 1, offset + at + 1
                    elif in_string:
                        escaped = byte == _BACKSLASH
                        in_string = byte != _QUOTE
                    elif byte == _QUOTE:
                        in_string = True
                    elif byte in _OPEN:
                        depth += 1
                    elif depth == 0 and (byte == _COMMA or byte == ord("]")):
                        parts.append(chunk[pos:at])
                        yield decode(self.name, start, b"".join(parts).rstrip(), start_column)
                        state, pos = ("next" if byte == _COMMA else "after"), at + 1
                        continue
                    elif byte in _CLOSE:
                        depth = max(0, depth - 1)  # an unbalanced '}' is left to the element's decoder to report
                    parts.append(chunk[pos : at + 1])
                    pos = at + 1
                    continue
                byte = chunk[pos]
                if byte in _WHITESPACE:
                    if byte == _NEWLINE:
                        line, line_start = line + 1, offset + pos + 1
                    pos += 1
                elif state == "before":
                    if byte != ord("["):
                        raise FileError(self.name, line, "a JSON array file must start with '['", "write one JSON array of objects, or one object per line (JSONL)")
                    state, pos = "first", pos + 1
                elif state == "after":
                    raise FileError(self.name, line, "text after the end of the JSON array", "remove it, or put every object inside the array")
                elif byte == ord("]"):
                    if state == "next":
                        raise FileError(self.name, line, "a comma before ']' (JSON allows no trailing comma)", "remove the last comma")
                    state, pos = "after", pos + 1
                else:
                    state, start, parts, depth = "inside", line, [], 0
                    start_column = offset + pos - line_start + 1
            offset += len(chunk)
            chunk = stream.read(CHUNK_BYTES)
        if state != "after":
            where = f"the object that starts at line {start} is not closed" if state == "inside" else "the array is not closed"
            raise FileError(self.name, line, f"the file ends inside the JSON array: {where}", "check that the file was written completely, and close the array with ']'")
