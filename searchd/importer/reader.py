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
_TOP = re.compile(rb'["\[\]{},]')  # what matters in an element, outside strings: nesting, and commas at its top
_NESTED = re.compile(rb'["\[\]{}]')  # … deeper in it, where commas do not end it
_INSIDE = re.compile(rb'["\\]')  # … and in a string
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+"', re.DOTALL)  # a string's rest, through its closing quote
_QUOTE, _BACKSLASH, _NEWLINE, _COMMA, _BEGIN, _END = 0x22, 0x5C, 0x0A, 0x2C, 0x5B, 0x5D
_OPEN = frozenset(b"[{")


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
        def lines() -> Iterator[bytes]:
            buffer, at = head, 0  # the first chunk was read to tell the format; lines continue from it
            while True:
                cut = buffer.find(b"\n", at)
                if cut >= 0:  # an index into the chunk, not a slice of the rest: a chunk holds thousands of lines
                    yield buffer[at : cut + 1]
                    at = cut + 1
                    continue
                more = stream.read(CHUNK_BYTES)
                if not more:
                    if at < len(buffer):
                        yield buffer[at:]
                    return
                buffer, at = buffer[at:] + more, 0

        for number, line in enumerate(lines(), 1):
            self.position += len(line)
            if number == 1:
                line = line.removeprefix(_BOM)
            text = line.lstrip()
            if text.strip():
                yield decode(self.name, number, text.rstrip(), len(line) - len(text) + 1)

    def _array(self, stream: IO[bytes], head: bytes) -> Iterator[Record]:
        """The elements of a top-level JSON array, cut at the commas that are outside strings and nesting.

        Python looks only at brackets, quotes and top-level commas: a whole string is skipped by one
        regular-expression match, and an element's lines are counted once, by ``bytes.count``.
        """
        line, depth, in_string, escaped = 1, 0, False, False
        offset = line_start = start_column = 0  # bytes before the chunk; where the current line starts
        state = "before"  # before '[' → first (an element or ']') → inside → next (after ',') … → after ']'
        parts: list[bytes] = []
        start = taken = 0  # the element's first line; where its part in this chunk begins
        chunk = head

        def take(stop: int) -> None:
            """The element's bytes in this chunk up to ``stop`` are read: keep them and count their lines."""
            nonlocal line, line_start
            parts.append(chunk[taken:stop])
            newlines = chunk.count(b"\n", taken, stop)
            if newlines:
                line, line_start = line + newlines, offset + chunk.rfind(b"\n", taken, stop) + 1

        while chunk:
            self.position += len(chunk)
            pos, end, taken = 0, len(chunk), 0
            while pos < end:
                if state == "inside":
                    if escaped:  # the byte after a backslash never ends a string
                        escaped, pos = False, pos + 1
                        continue
                    if in_string:  # a string that began in an earlier chunk
                        found = _INSIDE.search(chunk, pos)
                        if found is None:
                            break
                        pos = found.end()
                        escaped = in_string = chunk[found.start()] == _BACKSLASH
                        continue
                    found = (_TOP if depth == 0 else _NESTED).search(chunk, pos)
                    if found is None:
                        break
                    at = found.start()
                    byte = chunk[at]
                    if byte == _QUOTE:
                        rest = _STRING_REST.match(chunk, at + 1)
                        in_string = rest is None  # it goes on in the next chunk
                        pos = rest.end() if rest is not None else at + 1
                    elif depth == 0 and (byte == _COMMA or byte == _END):
                        take(at)
                        yield decode(self.name, start, b"".join(parts).rstrip(), start_column)
                        state, pos = ("next" if byte == _COMMA else "after"), at + 1
                    else:
                        depth = depth + 1 if byte in _OPEN else max(0, depth - 1)  # an unbalanced '}' is left to the decoder
                        pos = at + 1
                    continue
                byte = chunk[pos]
                if byte in _WHITESPACE:
                    if byte == _NEWLINE:
                        line, line_start = line + 1, offset + pos + 1
                    pos += 1
                elif state == "before":
                    if byte != _BEGIN:
                        raise FileError(self.name, line, "a JSON array file must start with '['", "write one JSON array of objects, or one object per line (JSONL)")
                    state, pos = "first", pos + 1
                elif state == "after":
                    raise FileError(self.name, line, "text after the end of the JSON array", "remove it, or put every object inside the array")
                elif byte == _END:
                    if state == "next":
                        raise FileError(self.name, line, "a comma before ']' (JSON allows no trailing comma)", "remove the last comma")
                    state, pos = "after", pos + 1
                else:
                    state, start, parts, depth, taken = "inside", line, [], 0, pos
                    start_column = offset + pos - line_start + 1
            if state == "inside":
                take(end)
            offset += len(chunk)
            chunk = stream.read(CHUNK_BYTES)
        if state != "after":
            where = f"the object that starts at line {start} is not closed" if state == "inside" else "the array is not closed"
            raise FileError(self.name, line, f"the file ends inside the JSON array: {where}", "check that the file was written completely, and close the array with ']'")
