"""The applied spec: what the data directory really holds, so plans and restarts diff against it.

Saved as ``applied/spec.pickle`` (the spec, with module setting values replaced by
digests: no secret is written to disk) beside a human-readable ``applied/status.json``.
Written to a temporary file and renamed, so a crash leaves the old or the new one.
"""

from __future__ import annotations

import copyreg
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

from searchd.config.revision import redacted, revision
from searchd.config.spec import Spec

APPLIED_DIR = "applied"

# Where this module lived when older data directories were written: their pickles name it.
_FORMER_MODULE = "searchd.reload.applied"


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


class _Unpickler(pickle.Unpickler):
    """Reads pickles that name this module by its former path too."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(__name__ if module == _FORMER_MODULE else module, name)


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
        data = (data_dir / APPLIED_DIR / "spec.pickle").read_bytes()
    except FileNotFoundError:
        return None
    found = _Unpickler(io.BytesIO(data)).load()
    return found if isinstance(found, Applied) else None
