"""A fast first reading of a large config file: rapidyaml parses it in C++, orjson reads its JSON.

The exact loader (``loader.py``: PyYAML's events, a node walk that records every position) costs
about 1 µs per YAML event before any check, 5 s or more for 40 MB of dense YAML.  Positions are only
needed to report an issue, so a large file is first read here, without them, and checked; an issue
is then located by reading again exactly only the collection it is in (``locate.py``), or the whole
file where that cannot be done.

What this reading gives must therefore be exactly the data the exact loader builds.  Two YAML
libraries differ in corners, and rapidyaml reads YAML 1.2 (``yes`` is a string, ``1e3`` a number)
where PyYAML reads YAML 1.1 as every config was written, so ``fast_data`` answers None, and the
exact loader reads the file, unless the file keeps to a plain subset where the two agree:

- no anchor, alias, tag, directive, block scalar, complex key or document marker, no backslash,
  tab, carriage return or character PyYAML refuses (``_plain_source``: a few byte scans);
- no number in exponent form, and no string (key or value) that PyYAML would read as a bool,
  null, number, timestamp or merge key if it was unquoted (``_SAFE_SCHEMA``, checked in Rust);
- no duplicate key (JSON would keep the last one silently; PyYAML's loader reports it);
- nesting within ``YamlLimits.max_depth``, bounded before rapidyaml reads the file (``_nesting_within``: its
  emitter stops at 64 levels and writes its own error to stderr, which its API cannot silence);
  a ``${VAR}`` that is set and reads as a string.

A collections list whose items repeat whole entries (a generated config) is folded first (``repeats.py``):
each repeated entry is parsed and checked once, and shared by the collections that repeat it.

So the limits of ``yamlsafe`` hold here too: nothing is expanded (no alias), nesting is bounded, and
the size limit was applied before the file was read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import numpy as np
import orjson
import yaml

from searchd.config.loader import ENV_REF, STR_TAG, TYPED_TAGS, Locator, PathKey, SourceDocument, is_secret
from searchd.config.locate import ItemLocator
from searchd.config.repeats import fold
from searchd.config.validate import config_schema, entries_independent, surely_valid
from searchd.config.yamlsafe import YamlLimits

# Below this a file is read exactly at once: it takes milliseconds, and a fast reading saves nothing.
FAST_MIN_BYTES = 256 * 1024

# Characters that start a YAML construct outside the plain subset when they begin a token.
_INDICATORS = b"&*!?|>%@`"
_TOKEN_START = frozenset(b" \n[{,")
# Anywhere: escapes (the two libraries unescape alike, but the check below could not see through them),
# tabs and carriage returns (indentation corners), ryml's rewrite of `-.5` to -0.5 (PyYAML: a string),
# a document marker, and `${` (handled below, but only when present).
_FORBIDDEN = (b"\\", b"\t", b"\r", b"\n---")
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n"


def _typed_when_plain() -> str:
    """A pattern for the strings PyYAML would not read as strings were they unquoted (bool, null, int, float,
    timestamp, merge ...): PyYAML's own implicit resolvers, joined (verbose regexes, which Rust reads too)."""
    patterns = {regexp.pattern: None for entries in yaml.resolver.Resolver.yaml_implicit_resolvers.values() for tag, regexp in entries if tag != STR_TAG}
    return "(?x)(?:" + "|".join(patterns) + ")"


class _Unsure(Exception):
    """This file is outside the plain subset: the exact loader reads it."""


def _plain_source(raw: bytes) -> bool:
    """Whether the bytes keep to the plain subset (cheap scans; a false alarm only costs the exact reading)."""
    if raw.startswith((b"---", b"...", b"%", b"\xef\xbb\xbf")) or any(token in raw for token in _FORBIDDEN) or _dot_tokens(raw):
        return False
    if raw.isascii():
        if raw.translate(None, _PRINTABLE_ASCII):
            return False  # a control character PyYAML refuses
    elif yaml.reader.Reader.NON_PRINTABLE.search(raw.decode("utf-8")):
        return False
    for opening, closing in ((b"[", b"]"), (b"{", b"}")):
        # An unclosed or stray bracket: ryml may read it as text where PyYAML refuses it.  (Counted only when present.)
        if (opening in raw or closing in raw) and raw.count(opening) != raw.count(closing):
            return False
    for indicator in _INDICATORS:
        at = raw.find(indicator)
        while at != -1:
            if (at == 0 or raw[at - 1] in _TOKEN_START) and not _in_comment(raw, at):
                return False
            at = raw.find(indicator, at + 1)
    return _brackets_close_flows(raw) and _nesting_within(raw, YamlLimits().max_depth)


# The bytes that may follow a closing bracket at once, and the quotes that may when the bracket closes `[]`.
_CLOSERS_FOLLOWERS = np.zeros(256, dtype=bool)
_CLOSERS_FOLLOWERS[list(b",]}\n")] = True
_QUOTES = np.zeros(256, dtype=bool)
_QUOTES[list(b"\"'")] = True


def _dot_tokens(raw: bytes) -> bool:
    """Whether ``-.``, ``+.`` or a line starting ``...`` is in the bytes: found from the dots, by numpy (three byte
    searches cost more, as `-` starts every block list item)."""
    if b"." not in raw:
        return False
    data = np.frombuffer(raw, dtype=np.uint8)
    dots = np.flatnonzero(data == ord("."))
    dots = dots[dots > 0]
    before = data[dots - 1]
    if ((before == ord("-")) | (before == ord("+"))).any():
        return True
    lines = dots[(before == ord("\n")) & (dots + 2 < len(raw))]
    return bool(((data[lines + 1] == ord(".")) & (data[lines + 2] == ord("."))).any())


# bytes.translate with these, in C: the first keeps only brackets, the second reads every dash as a space.
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_DASH_AS_SPACE = bytes(range(256)).replace(b"-", b" ")


def _nesting_within(raw: bytes, limit: int) -> bool:
    """Whether the file surely nests at most ``limit`` collections deep (counting the root), from its lines' starts and
    its brackets: a few passes in C.  A false alarm only costs the exact reading, which says where it is too deep.

    A block collection starts where a line's content does, or after a ``- `` on its line (``- k: v``, ``- - a``): at a
    column no further than the run of spaces and dashes that starts its line.  Along a chain of nested block
    collections each starts at a greater column than the one holding it, except a sequence that is a mapping's value,
    which may stand at its key's column: so with every such run within ``reach`` columns, block nesting is at most
    2 x (reach + 1).  Flow collections nest inside it at most as deep as the brackets do (counted in strings too).
    """
    brackets = np.frombuffer(raw.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    flow = int(np.cumsum(np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)).max()) if brackets.size else 0
    reach = (limit - flow) // 2 - 1  # a config indented 2 (or 4) columns a level passes up to 30 columns, 15 levels
    if reach < 0:
        return False
    runs, past = raw.translate(_DASH_AS_SPACE), b" " * (reach + 1)
    return not runs.startswith(past) and b"\n" + past not in runs


def _brackets_close_flows(raw: bytes) -> bool:
    """Whether every ``]`` and ``}`` ends a flow collection and is followed by another, a comma or the line's end.

    ryml reads `- [a] - b` as two entries and `k: ]` as a string, where PyYAML refuses both; a closing bracket
    that starts a string is left by the safe schema (no string starts with one).  ``"TEXT[]"`` is allowed.
    The brackets followed at once by one of those are found by numpy in a few passes in C; only the others
    (``] #``, a ``${VAR}``, a bracket in a comment) are looked at one by one.
    """
    if b"]" not in raw and b"}" not in raw:
        return True
    data = np.frombuffer(raw, dtype=np.uint8)
    closers = np.flatnonzero((data == ord("]")) | (data == ord("}")))
    inner = closers[closers + 1 < len(raw)]
    following = data[inner + 1]
    plain = _CLOSERS_FOLLOWERS[following] | (_QUOTES[following] & (data[np.maximum(inner - 1, 0)] == ord("[")))
    for at in (*inner[~plain].tolist(), *closers[closers + 1 >= len(raw)].tolist()):
        after = raw[at + 1 : at + 65].lstrip(b" ")[:1]
        allowed = after in (b",", b"]", b"}", b"\n", b"#") or (not after and at + 65 >= len(raw))
        if not (allowed or raw[at - 1 : at + 2] in (b'[]"', b"[]'") or _ends_reference(raw, at) or _in_comment(raw, at)):
            return False
    return True


def _ends_reference(raw: bytes, at: int) -> bool:
    start = raw.rfind(b"${", max(0, at - 256), at)
    return start != -1 and raw[start + 2 : at].isascii() and raw[start + 2 : at].decode().isidentifier()


def _line_before(raw: bytes, at: int) -> bytes:
    """What stands before ``raw[at]`` on its line; empty when the line starts more than 1,000 bytes before (so each look is bounded)."""
    start = raw.rfind(b"\n", max(0, at - 1000), at) + 1
    return raw[start:at] if start or at <= 1000 else b""


def _in_comment(raw: bytes, at: int) -> bool:
    """Whether ``raw[at]`` is surely inside a comment: a ``#`` at the line's start or after a space, with no quote before it."""
    before = _line_before(raw, at)
    hash_at = 0 if before.lstrip(b" ").startswith(b"#") else before.find(b" #")
    return hash_at != -1 and b"'" not in before[:hash_at] and b'"' not in before[:hash_at]


@cache
def _safe_validator() -> Any:
    """A JSON Schema that every fast reading must pass: no string PyYAML would type, nesting within the limit.

    ``level<k>`` accepts a value whose containers nest at most k deep, as ``yamlsafe`` counts them.
    None when jsonschema-rs is not installed (then the exact loader reads every file).
    """
    try:
        import jsonschema_rs
    except ImportError:
        return None
    typed = _typed_when_plain()  # a quoted string of this form is a string to both: it only costs the exact reading
    names = sorted(name for name in _declared_names(config_schema()) if not re.search(typed, name) and re.fullmatch(r"[^\]}\s]\S*", name))
    # ... nor one that starts with a closing bracket (ryml reads `k: ]` as one, PyYAML refuses it).
    string: dict[str, Any] = {"not": {"type": "string", "pattern": f"{typed}|^[\\]}}]"}}
    defs: dict[str, Any] = {"level0": {**string, "type": ["string", "number", "boolean", "null"]}}
    for k in range(1, YamlLimits().max_depth + 1):
        inner = {"$ref": f"#/$defs/level{k - 1}"}
        # A key with whitespace is left too: a key folded from several lines is an error to PyYAML, not to ryml.
        # The names the config schema declares are most keys, and none is typed: an enum passes them at less cost.
        keys = {"anyOf": [{"enum": names}, {"not": {"pattern": typed}, "pattern": r"^[^\]}\s]\S*$"}]}
        defs[f"level{k}"] = {**string, "propertyNames": keys, "items": inner, "additionalProperties": inner}
    return jsonschema_rs.validator_for({"$defs": defs, "$ref": f"#/$defs/level{YamlLimits().max_depth}"})


def _node_estimate(raw: bytes) -> int:
    """About how many nodes ryml's tree will hold, from above: each is a map entry (a ``:``), a sequence item (a ``-``
    or a ``,``), a flow sequence (a ``[``) or the root.  Bytes inside strings count too, so it is capped: a tree
    keeps about 140 bytes a node, and ryml grows one past its reservation by itself."""
    counted = raw.count(b":") + raw.count(b"-") + raw.count(b",") + raw.count(b"[") + 16
    return min(counted, len(raw) // 12 + 16)


def _declared_names(schema: Any) -> set[str]:
    """Every key a ``properties`` of the schema declares, at any depth."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                found.update(node["properties"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _parse_ryml(raw: bytes) -> str:
    try:
        import ryml  # type: ignore[import-untyped]
    except ImportError as exc:
        raise _Unsure from exc
    try:
        tree = ryml.Tree()
        # ryml doubles its node array as it fills, copying it each time: 40 % of the parse of a dense file.
        tree.reserve(_node_estimate(raw))
        ryml.parse_in_arena(raw, tree=tree)
        # Its errors (syntax, nesting past its own limit) are left to the exact loader to word and locate.
        text: str = ryml.emit_json(tree)
    except Exception as exc:  # ryml's exceptions share no base of their own
        raise _Unsure from exc
    return text


# For one pass in C: digits and dots become `D`, the exponent letters `e`, the rest `x`; a `De` is where a number may
# have an exponent (in a string too: then it only costs the slower reading of numbers).
_EXPONENTS = b"".join(b"D" if c in b"0123456789." else b"e" if c in b"eE" else b"x" for c in range(256))


def _read_json(raw: bytes, text: str) -> Any:
    """ryml's JSON as Python data.  orjson reads it a third faster than json, but reads ``1e3`` as a number, where
    PyYAML reads a string (its floats need a dot and a signed exponent): when the YAML holds a digit or dot followed
    by an ``e``, json reads it instead, with a hook that refuses every exponent."""
    if b"De" not in raw.translate(_EXPONENTS):
        return orjson.loads(text)  # NaN, Infinity or a number past 64 bits: a JSONDecodeError (a ValueError)
    return json.loads(text, parse_float=_float, parse_constant=_constant)


def _float(text: str) -> float:
    if "e" in text or "E" in text:
        raise _Unsure  # `1e3` is a string to PyYAML (its floats need a dot and a signed exponent)
    return float(text)


def _constant(text: str) -> Any:
    raise _Unsure  # NaN or Infinity: ryml writes `.nan` as a string, so this is not from a plain file


def fast_data(raw: bytes, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The file's data as the exact loader would build it without an issue, or None: read it exactly."""
    read = _fast_reading(raw, environ, schema=False)
    return None if read is None else read[0]


def fast_document(raw: bytes, environ: Mapping[str, str], file: str) -> SourceDocument | None:
    """The file read fast as a document whose positions are found when an issue asks for them (locate.py), or None.

    Its ``checked`` says whether it passed the config schema (checked in Rust): when not, the Python validator
    words the errors on this data, the one the exact loader would build.  The schema is checked on the folded
    reading (repeats.py), before each left-out entry is put back: it equals an entry checked in the same place,
    and a collection's keys are checked each on its own (``validate.entries_independent``).
    """
    read = _fast_reading(raw, environ, schema=True)
    if read is None:
        return None
    data, valid = read
    return SourceDocument(file, data, Locator(default_file=file, lazy=ItemLocator(raw, file, environ, data)), exact=False, checked=valid)


def _fast_reading(raw: bytes, environ: Mapping[str, str], schema: bool) -> tuple[dict[str, Any], bool] | None:
    """The data and whether it passed the config schema (``schema``; else True), or None."""
    validator = _safe_validator()
    if validator is None or not _plain_source(raw):
        return None
    folded = fold(raw)
    source = raw if folded is None else folded.text
    try:
        text = _parse_ryml(source)
        data: dict[str, Any] = _read_json(source, text)
        if not isinstance(data, dict):
            raise _Unsure
        # A key given twice: JSON keeps the last silently.  Each key is written `"key":` once, and a
        # string holds `"` only escaped, so a lost key leaves fewer of them in the data written back.
        if text.count('":') != orjson.dumps(data).count(b'":') or not validator.is_valid(data):
            raise _Unsure
        server = data.get("server")
        # Secrets are `apiKey` anywhere, server.auth's keys and server.storage's url (loader.is_secret).
        if b"${" in raw or b"apiKey" in raw or (isinstance(server, dict) and ("auth" in server or "storage" in server)):
            _environment(data, environ)  # on the folded data: a left-out entry is filled as its first occurrence was
        whole = data if folded is None else folded.unfold(data)
        if whole is None:
            raise _Unsure
        # The schema checks the values filled in (`host: '${EMPTY}'` is no host).
        valid = not schema or surely_valid(data if folded is None or entries_independent() else whole)
    except (_Unsure, ValueError, TypeError, OverflowError, RecursionError, orjson.JSONEncodeError):
        return None
    return whole, valid


def _environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Fill ``${VAR}`` in place and check secrets, as the exact loader does; raise _Unsure where it would report an issue.

    An unquoted ``port: ${PORT}`` takes the type its value reads as; this reading cannot tell
    quoted from unquoted, so such a value (a number or bool) is left to the exact loader.
    """
    resolve: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = yaml.resolver.Resolver().resolve
    stack: list[tuple[PathKey, dict[str, Any] | list[Any]]] = [((), data)]
    while stack:
        path, container = stack.pop()
        items = list(container.items()) if isinstance(container, dict) else list(enumerate(container))
        for key, value in items:
            here = (*path, key)
            if isinstance(value, (dict, list)):
                stack.append((here, value))
                continue
            if is_secret(here) and not (isinstance(value, str) and ENV_REF.fullmatch(value)):
                raise _Unsure  # a secret written in the file
            if not isinstance(value, str) or "${" not in value:
                continue
            names = ENV_REF.findall(value)
            if any(name not in environ for name in names):
                raise _Unsure  # an unset variable
            result = ENV_REF.sub(lambda match: environ[match.group(1)], value)
            if ENV_REF.fullmatch(value) and result and resolve(yaml.ScalarNode, result, (True, False)) in TYPED_TAGS:
                raise _Unsure  # unquoted it reads as a number or bool, quoted as a string
            container[key] = result  # type: ignore[index]
