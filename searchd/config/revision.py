"""A spec's identity: its revision (a content hash) and its redacted form, which holds no secret.

Pure functions of the spec: plans compare redacted specs, the applied spec is stored
redacted, and a revision names a config in logs, status and ``searchd plan``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

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
    parts, each shared part is written once; else orjson writes the data from the dataclasses in Rust, and json
    reads and writes it back into that very text (about 2 s for 90,000).
    """
    plain = redacted(spec)
    collections = plain.collections
    with collector_paused():  # a million short-lived objects, no cycles: the collector would rescan the spec for them
        if 2 * len({id(c.properties) for c in collections}) <= len(collections):
            text = _text_of_shared(plain)  # a generated config's collections share their parts (spec._Shared)
        else:
            text = json.dumps(_plain_data(plain), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _text_of_shared(plain: Spec) -> str:
    """``json.dumps(canonical(plain), sort_keys=True)``, each part the collections share written once (by identity:
    the spec holds them) and the collections' text put together as json.dumps puts a list and a mapping together."""
    written: dict[int, str] = {}

    def text(value: Any) -> str:
        if value is None or isinstance(value, (str, int, float)):
            return json.dumps(value)
        found = written.get(id(value))
        if found is None:
            found = written[id(value)] = json.dumps(canonical(value), sort_keys=True)
        return found

    names = sorted(f.name for f in dataclasses.fields(CollectionSpec))
    keys = [json.dumps(name) + ": " for name in names]
    collections = ", ".join("{" + ", ".join(key + text(getattr(c, name)) for key, name in zip(keys, names, strict=True)) + "}" for c in plain.collections)
    rest = json.dumps({"modules": canonical(plain.modules), "server": canonical(plain.server)}, sort_keys=True)
    return '{"collections": [' + collections + "], " + rest[1:]


def _plain_data(plain: Spec) -> Any:
    try:
        text = orjson.dumps({"collections": plain.collections, "modules": plain.modules, "server": plain.server}, default=_mapping)
        data = json.loads(text)
    except (TypeError, orjson.JSONEncodeError):  # a value orjson does not write (an integer past 64 bits): walked in Python
        data = canonical(plain)
    return data
