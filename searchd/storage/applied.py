"""The applied spec: what the data directory really holds, so plans and restarts diff against it.

Saved as ``applied/spec.json``, ``{"format": 1, "revision": …, "appliedAt": …, "spec": …}``,
beside a shorter ``applied/status.json``.  The spec is stored redacted: module setting values
and API keys are replaced by digests, so no secret is written to disk.  Both files are written
to a temporary file and renamed, so a crash leaves the old or the new one.

The spec is plain JSON: each dataclass is an object keyed by its field names, enums are
their values, tuples are arrays, mappings are objects.  It is read back generically from
the dataclasses' type hints into the same frozen objects (``to_data`` / ``from_data``).
A field missing from the file takes its default (fields added since it was written);
a field the spec does not have, a value of the wrong type or another format version is
a ``StorageError`` naming the file.

Data directories written before format 1 hold ``applied/spec.pickle``.  searchd reads no
pickles: it refuses such a directory with a ``StorageError`` that names the one-off converter,
``scripts/convert_applied_pickle.py``, which rewrites the pickle as ``spec.json``.  A pickle
found beside ``spec.json`` is newer than it (an older searchd run on the directory since), so
it is refused too.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import time
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from searchd.config.revision import redacted, revision
from searchd.config.spec import Spec
from searchd.errors import StorageError

log = logging.getLogger("searchd.storage")

APPLIED_DIR = "applied"
SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
FORMAT = 1

# Before format 1: a pickle of Applied, converted by scripts/convert_applied_pickle.py.
PICKLE_FILE = "spec.pickle"
_RESTORE_HINT = "restore the data directory's applied/ from a backup taken by this searchd version"


@dataclass(frozen=True)
class Applied:
    spec: Spec  # redacted
    revision: str
    applied_at: float


# -- plain JSON data from and back to the spec's dataclasses, by their type hints ----------------


class Mismatch(ValueError):
    """Stored data that does not fit the type it is read as; ``where`` is its path from the spec down."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


_FIELDS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved type hint, has a default) for each field a dataclass is constructed with."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = tuple(
            (f.name, hints[f.name], f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
            for f in dataclasses.fields(cls)
            if f.init
        )
    return _FIELDS[cls]


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _is_mapping(hint: Any) -> bool:
    return typing.get_origin(hint) in (Mapping, dict, MappingProxyType) or hint in (dict, MappingProxyType)


def _is_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple or hint is tuple


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _plain(value: Any, where: str) -> Any:
    """A value typed ``Any`` (module settings), which must already be JSON: it is stored and read as it is."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where}: {_type_name(value)} {value!r} has no JSON form that reads back equal")


def to_data(value: Any, hint: Any = Spec, where: str = "spec") -> Any:
    """``value`` (of type ``hint``) as plain JSON data; a TypeError for a value or hint it cannot store faithfully."""
    if hint is Any:
        return _plain(value, where)
    if hint is None or hint is type(None):
        if value is None:
            return None
    elif _is_union(hint):
        for member in typing.get_args(hint):
            try:
                return to_data(value, member, where)
            except TypeError:
                continue
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if type(value) is hint:
            return {name: to_data(getattr(value, name), field_hint, f"{where}.{name}") for name, field_hint, _ in _fields(hint)}
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return _plain(value.value, where)
    elif _is_tuple(hint):
        if isinstance(value, tuple):
            items = _tuple_items(hint, len(value), where)
            return [to_data(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, items))]
    elif _is_mapping(hint):
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        if key_hint not in (str, Any):
            raise TypeError(f"{where}: mapping keys of type {key_hint!r} cannot be JSON object keys")
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return {k: to_data(v, value_hint, f"{where}[{k!r}]") for k, v in value.items()}
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{where}: no JSON form for values of type {hint!r}")
    raise TypeError(f"{where}: {_type_name(value)} {value!r} is not a {hint!r}")


def _tuple_items(hint: Any, length: int, where: str) -> list[Any]:
    """The hint of each of ``length`` items of a tuple typed ``hint``."""
    args = typing.get_args(hint)
    if not args:
        return [Any] * length
    if len(args) == 2 and args[1] is Ellipsis:
        return [args[0]] * length
    if len(args) != length:
        raise Mismatch(where, f"{length} item(s) where {len(args)} are expected")
    return list(args)


def from_data(data: Any, hint: Any = Spec, where: str = "spec") -> Any:
    """The value of type ``hint`` that ``to_data`` stored as ``data``; a Mismatch where the data does not fit."""
    if hint is Any:
        return data
    if hint is None or hint is type(None):
        if data is None:
            return None
    elif _is_union(hint):
        members = typing.get_args(hint)
        if data is None and type(None) in members:
            return None
        others = [m for m in members if m is not type(None)]
        problems = []
        for member in others:
            try:
                return from_data(data, member, where)
            except Mismatch as exc:
                if len(others) == 1:
                    raise
                problems.append(exc.problem)
        raise Mismatch(where, "; ".join(problems))
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(data, dict):
            fields = _fields(hint)
            unknown = sorted(set(data) - {name for name, _, _ in fields})
            if unknown:
                raise Mismatch(where, f"{hint.__name__} has no field(s) {', '.join(map(repr, unknown))}")
            missing = [name for name, _, has_default in fields if not has_default and name not in data]
            if missing:
                raise Mismatch(where, f"{hint.__name__} field(s) {', '.join(map(repr, missing))} missing")
            return hint(**{name: from_data(data[name], field_hint, f"{where}.{name}") for name, field_hint, _ in fields if name in data})
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(data)
        except (ValueError, TypeError):
            raise Mismatch(where, f"{data!r} is not a {hint.__name__} (one of {', '.join(repr(m.value) for m in hint)})") from None
    elif _is_tuple(hint):
        if isinstance(data, list):
            items = _tuple_items(hint, len(data), where)
            return tuple(from_data(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(data, items)))
    elif _is_mapping(hint):
        _, value_hint = typing.get_args(hint) or (Any, Any)
        if isinstance(data, dict):
            contents = {k: from_data(v, value_hint, f"{where}[{k!r}]") for k, v in data.items()}
            # The spec's mappings are read-only views (spec.py): a plain dict only where the hint says dict.
            return contents if (typing.get_origin(hint) or hint) is dict else MappingProxyType(contents)
    elif hint is bool:
        if isinstance(data, bool):
            return data
    elif hint is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif hint is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return data  # an int stays an int, as it was in the spec (YAML's `weights: {a: 1}`)
    elif hint is str:
        if isinstance(data, str):
            return data
    else:
        raise TypeError(f"{where}: no JSON form for values of type {hint!r}")
    expected = getattr(hint, "__name__", None) or repr(hint)
    raise Mismatch(where, f"{_type_name(data)} {data!r} where {expected} is expected")


# -- files ---------------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)


def applied_document(applied: Applied) -> bytes:
    """The applied spec as the bytes stored (in ``applied/spec.json``, or in the database)."""
    document = {"format": FORMAT, "revision": applied.revision, "appliedAt": applied.applied_at, "spec": to_data(applied.spec)}
    return (json.dumps(document, indent=2) + "\n").encode()


def new_applied(spec: Spec) -> Applied:
    return Applied(redacted(spec), revision(spec), time.time())


def write_spec_file(data_dir: Path, applied: Applied) -> Path:
    """Write ``applied/spec.json`` (and remove a pre-format-1 pickle, older than it); its path."""
    directory = data_dir / APPLIED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / SPEC_FILE, applied_document(applied))
    (directory / PICKLE_FILE).unlink(missing_ok=True)
    return directory / SPEC_FILE


def write_applied(data_dir: Path, applied: Applied, extra: Mapping[str, Any] | None = None) -> None:
    """Save an applied spec in a data directory (``save_applied``; a backup of the PostgreSQL store copies it so)."""
    directory = write_spec_file(data_dir, applied).parent
    status = {"revision": applied.revision, "appliedAt": applied.applied_at, **(extra or {})}
    _write_atomically(directory / STATUS_FILE, json.dumps(status, indent=2).encode())


def save_applied(data_dir: Path, spec: Spec, extra: Mapping[str, Any] | None = None) -> Applied:
    applied = new_applied(spec)
    write_applied(data_dir, applied, extra)
    return applied


def load_applied(data_dir: Path) -> Applied | None:
    """The last applied spec, or None for a data directory that never had one; a StorageError when it cannot be read."""
    directory = data_dir / APPLIED_DIR
    if (directory / PICKLE_FILE).exists():
        raise StorageError(
            f"the applied spec {directory / PICKLE_FILE} is a pickle from before format {FORMAT}, which searchd no longer reads",
            f"stop the server and convert it once with `python -m scripts.convert_applied_pickle {data_dir}` from a searchd checkout, "
            "or " + _RESTORE_HINT,
        )
    path = directory / SPEC_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read the applied spec {path}: {exc}", "check the data directory's permissions") from exc
    return read_applied(path, data)


def read_applied(path: Path | str, data: bytes) -> Applied:
    """The applied spec stored as ``data``; a StorageError naming ``path`` (where it was read) when it does not fit."""
    try:
        document = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise StorageError(f"the applied spec {path} is not readable JSON: {exc}", _RESTORE_HINT) from None
    if not isinstance(document, dict) or "format" not in document:
        raise StorageError(f"{path} is not an applied spec: it has no format version", _RESTORE_HINT)
    if document["format"] != FORMAT:
        raise StorageError(
            f"the applied spec {path} is in format {document['format']!r}; this searchd reads format {FORMAT}",
            "it was written by another searchd version: run that version, or " + _RESTORE_HINT,
        )
    try:
        unknown = sorted(set(document) - {"format", "revision", "appliedAt", "spec"})
        if unknown:
            raise Mismatch("<top>", f"unknown key(s) {', '.join(map(repr, unknown))}")
        revision_ = from_data(document.get("revision"), str, "revision")
        applied_at = from_data(document.get("appliedAt"), float, "appliedAt")
        spec = from_data(document.get("spec"), Spec, "spec")
    except Mismatch as exc:
        raise StorageError(f"the applied spec {path} does not fit format {FORMAT}: {exc}", _RESTORE_HINT) from None
    return Applied(spec, revision_, applied_at)
