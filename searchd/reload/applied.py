"""The applied spec: what the data directory really holds, so plans and restarts diff against it.

Saved as ``applied/spec.pickle`` (the spec, with module setting values replaced by
digests: no secret is written to disk) beside a human-readable ``applied/status.json``.
Written to a temporary file and renamed, so a crash leaves the old or the new one.
"""

from __future__ import annotations

import copyreg
import dataclasses
import enum
import hashlib
import io
import json
import os
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from searchd.config.spec import Spec

APPLIED_DIR = "applied"


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def redacted(spec: Spec) -> Spec:
    """The spec with module setting values and API keys replaced by digests: comparable, but no secrets."""
    modules = {name: MappingProxyType({k: _digest(v) for k, v in settings.items()}) for name, settings in spec.modules.items()}
    keys = tuple(dataclasses.replace(k, key=_digest(k.key)) for k in spec.server.auth.api_keys)
    server = dataclasses.replace(spec.server, auth=dataclasses.replace(spec.server.auth, api_keys=keys))
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


def revision(spec: Spec) -> str:
    """A content hash of the effective config: comments, formatting and file layout do not change it."""
    return hashlib.sha256(json.dumps(canonical(redacted(spec)), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Applied:
    spec: Spec  # redacted
    revision: str
    applied_at: float


def readonly(contents: dict[Any, Any]) -> Mapping[Any, Any]:
    """How a pickled spec mapping is rebuilt (a named function: pickle cannot name mappingproxy)."""
    return MappingProxyType(contents)


def _pickled(value: Any) -> bytes:
    """Pickle, with the spec's read-only mappings (which pickle refuses) saved as their contents."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: lambda m: (readonly, (dict(m),))}
    pickler.dump(value)
    return out.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)


def save_applied(data_dir: Path, spec: Spec, extra: Mapping[str, Any] | None = None) -> Applied:
    directory = data_dir / APPLIED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    applied = Applied(redacted(spec), revision(spec), time.time())
    _write_atomically(directory / "spec.pickle", _pickled(applied))
    status = {"revision": applied.revision, "appliedAt": applied.applied_at, **(extra or {})}
    _write_atomically(directory / "status.json", json.dumps(status, indent=2).encode())
    return applied


def load_applied(data_dir: Path) -> Applied | None:
    """The last applied spec, or None for a data directory that never had one."""
    try:
        found = pickle.loads((data_dir / APPLIED_DIR / "spec.pickle").read_bytes())
    except FileNotFoundError:
        return None
    return found if isinstance(found, Applied) else None
