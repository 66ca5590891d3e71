"""A spec's identity: its revision (a content hash) and its redacted form, which holds no secret.

Pure functions of the spec: plans compare redacted specs, the applied spec is stored
redacted, and a revision names a config in logs, status and ``searchd plan``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson

from searchd.config.loader import collector_paused
from searchd.config.spec import CollectionSpec, Spec


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def redacted(spec: Spec) -> Spec:
    """The spec with module setting values, API keys and the database URL replaced by digests: comparable, but no secrets."""
    modules = {name: MappingProxyType({k: _digest(v) for k, v in settings.items()}) for name, settings in spec.modules.items()}
    keys = tuple(dataclasses.replace(k, key=_digest(k.key)) for k in spec.server.auth.api_keys)
    storage = dataclasses.replace(spec.server.storage, url=_digest(spec.server.storage.url) if spec.server.storage.url else "")
    server = dataclasses.replace(spec.server, auth=dataclasses.replace(spec.server.auth, api_keys=keys), storage=storage)
    return dataclasses.replace(spec, modules=MappingProxyType(modules), server=server)


def canonical(value: Any) -> Any:
    """Plain JSON data for hashing: dataclasses, mappings, tuples and enums unpacked."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "base_dir"}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _mapping(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(type(value).__name__)


def _unpacked(value: Any) -> Any:
    """A dataclass as the mapping of its fields, a mapping as a dict (for orjson)."""
    declared = getattr(type(value), "__dataclass_fields__", None)
    if declared is None:
        return _mapping(value)
    fields = value.__dict__
    # A spec's dataclasses keep their fields in their ``__dict__`` (spec._assemble) and nothing else, but Spec (its
    # cached properties), which is not written here.
    return fields if len(fields) == len(declared) else {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def revision(spec: Spec) -> str:
    """A content hash of the effective config: comments, formatting and file layout do not change it.

    Taken once per spec (``Spec.revision``): a reload asks for it several times, and it costs about a second per
    40 MB of config.
    """
    return spec.revision


def content_revision(spec: Spec) -> str:
    """``revision``, computed.

    The hash is of ``json.dumps(canonical(...), sort_keys=True)``, the form stored revisions were taken from.
    ``canonical`` walks the spec in Python (about 10 s for 90,000 collections): when the collections share their
    parts, each shared part is written once; else orjson writes the data from the dataclasses in Rust, and its text
    is spaced as json spaces it (``_spaced``; about 0.7 s for 90,000, against 3 s for json reading and writing it).
    """
    plain = redacted(spec)
    collections = plain.collections
    with collector_paused():  # a million short-lived objects, no cycles: the collector would rescan the spec for them
        if 2 * len({id(c.properties) for c in collections}) <= len(collections):
            text = _text_of_shared(plain)  # a generated config's collections share their parts (spec._Shared)
        else:
            return hashlib.sha256(_plain_text(plain)).hexdigest()[:12]
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _text_of_shared(plain: Spec) -> str:
    """``json.dumps(canonical(plain), sort_keys=True)``, each part the collections share written once (by identity:
    the spec holds them) and the collections' text put together as json.dumps puts a list and a mapping together."""
    written: dict[int, str] = {}
    string = json.encoder.encode_basestring_ascii  # json.dumps's own writing of a str (in C), without its call's cost

    def text(value: Any) -> str:
        if type(value) is str:
            return string(value)
        if value is None or isinstance(value, (str, int, float)):
            return json.dumps(value)
        found = written.get(id(value))
        if found is None:
            found = written[id(value)] = json.dumps(canonical(value), sort_keys=True)
        return found

    names = sorted(f.name for f in dataclasses.fields(CollectionSpec))
    # One collection's text: its fields' texts put into a template of json.dumps's keys and separators.
    template = "{" + ", ".join(json.dumps(name).replace("%", "%%") + ": %s" for name in names) + "}"
    values = operator.attrgetter(*names)
    collections = ", ".join([template % tuple(map(text, values(c))) for c in plain.collections])
    rest = json.dumps({"modules": canonical(plain.modules), "server": canonical(plain.server)}, sort_keys=True)
    return '{"collections": [' + collections + "], " + rest[1:]


def _plain_text(plain: Spec) -> bytes:
    """``json.dumps(canonical(plain), sort_keys=True)``, encoded."""
    try:
        # orjson writes a dataclass's fields in their order: each is handed back as the mapping of its fields, sorted.
        data = {"collections": plain.collections, "modules": plain.modules, "server": plain.server}
        compact = orjson.dumps(data, default=_unpacked, option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS)
    except (TypeError, orjson.JSONEncodeError):  # a value orjson does not write (an integer past 64 bits): walked in Python
        return json.dumps(canonical(plain), sort_keys=True).encode()
    # numpy's passes cost about 9 ns a byte, json's reading and writing about 5 ns a byte and 170 ns an item: a text
    # of long strings (a 40 MB description) is json's, one of many items numpy's (a comma per 48 bytes or more).
    spaced = _spaced(compact) if 48 * compact.count(b",") >= len(compact) else None
    # Else json reads orjson's text and writes it back in its own form (about 3 s for 90,000 collections).
    return spaced if spaced is not None else json.dumps(json.loads(compact), sort_keys=True).encode()


_QUOTE, _COMMA, _COLON, _SPACE = (ord(c) for c in "\",: ")
# For one pass in C: `0` becomes `Z`, other digits `D`, the exponent letters `e`, the dot stays, the rest is `x`.
_NUMERIC = bytes(b"Z"[0] if c == b"0"[0] else b"D"[0] if c in b"123456789" else b"e"[0] if c in b"eE" else b"."[0] if c == b"."[0] else b"x"[0] for c in range(256))


def _spaced(compact: bytes) -> bytes | None:
    """json.dumps's text from orjson's compact text of the same data with sorted keys, or None where they may differ.

    json puts a space after each ``,`` and ``:`` between items: found outside strings by numpy (without a backslash
    in the text every quote opens or closes a string, so a running parity of the quotes tells strings apart) and put
    in, in a few passes in C.  They differ too where json escapes (non-ASCII characters, DEL) and where they write a
    float each in its own way (``1e-05`` and ``0.00001``, ``1e-06`` and ``1e-6``; found in strings too, which only
    costs json's writing): then None.
    """
    if not compact.isascii() or b"\\" in compact or b"\x7f" in compact or _floats_apart(compact):
        return None
    data = np.frombuffer(compact, dtype=np.uint8)
    inside = np.bitwise_xor.accumulate(data == _QUOTE)  # a closing quote counts as outside: it is no separator
    separators = np.flatnonzero(((data == _COMMA) | (data == _COLON)) > inside)
    spaced = np.full(len(data) + len(separators), _SPACE, dtype=np.uint8)
    kept = np.ones(len(spaced), dtype=bool)
    kept[separators + np.arange(1, len(separators) + 1)] = False  # where each space lands, after its separator
    spaced[kept] = data
    return spaced.tobytes()


def _floats_apart(text: bytes) -> bool:
    """Whether a float the two write apart may be in the text: a digit before an exponent, or ``0.0000`` after no digit."""
    numeric = text.translate(_NUMERIC)
    return b"De" in numeric or b"Ze" in numeric or b"xZ.ZZZZ" in numeric
