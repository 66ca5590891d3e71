"""Convert a data directory's applied spec from the pickle of before format 1 to ``applied/spec.json``.

searchd wrote ``applied/spec.pickle`` between 2026-11-22 and 2026-12-06.  It no longer reads
pickles (reading one runs whatever code it names), and refuses to start on a directory that
holds one.  Run this once on such a directory, with the server stopped, from a searchd checkout:

    .venv/bin/python -m scripts.convert_applied_pickle DATA_DIR

The pickle names only searchd's spec classes and ``readonly`` (how it stored read-only
mappings); anything else is refused.  ``spec.json`` is written atomically, then the pickle removed.
"""

from __future__ import annotations

import argparse
import io
import logging
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from searchd.errors import StorageError
from searchd.storage.applied import APPLIED_DIR, FORMAT, PICKLE_FILE, Applied, applied_document, write_spec_file

log = logging.getLogger("searchd.storage")

# The modules the applied spec lived in when pickles were written, and the one it lives in now.
_APPLIED_MODULES = ("searchd.reload.applied", "searchd.storage.applied")
# What a pickle of frozen dataclasses, enums and tuples may name besides searchd's classes (copy_reg and __builtin__:
# the names protocols 0-2 write, which the unpickler maps to Python 3's).
_PLAIN = {
    (module, name)
    for module in ("copyreg", "copy_reg", "builtins", "__builtin__")
    for name in ("_reconstructor", "__newobj__", "__newobj_ex__", "object", "frozenset", "set", "tuple", "list", "dict")
}
_HINT = "restore the data directory's applied/ from a backup, or start from an empty data directory and import again"


def readonly(contents: dict[Any, Any]) -> Mapping[Any, Any]:
    """How a pickled spec mapping was rebuilt (the pickles name ``readonly`` in searchd's applied module)."""
    return MappingProxyType(contents)


class _Unpickler(pickle.Unpickler):
    """Only searchd's own classes, and ``readonly`` under the names the pickles give it."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _APPLIED_MODULES and name == "readonly":
            return readonly
        if module in _APPLIED_MODULES:
            module = "searchd.storage.applied"
        if not module.startswith("searchd.") and (module, name) not in _PLAIN:
            raise pickle.UnpicklingError(f"the pickle names {module}.{name}, which an applied spec never holds")
        return super().find_class(module, name)


_UNPICKLING = (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError, ValueError)


def convert(data_dir: Path) -> Applied:
    """Read ``applied/spec.pickle``, write it as ``spec.json`` and remove it; a StorageError naming the file otherwise."""
    old = data_dir / APPLIED_DIR / PICKLE_FILE
    try:
        found = _Unpickler(io.BytesIO(old.read_bytes())).load()
    except OSError as exc:
        raise StorageError(f"cannot read the applied spec {old}: {exc}", "check the path and the data directory's permissions") from exc
    except _UNPICKLING as exc:
        raise StorageError(f"the applied spec {old} (from before format {FORMAT}) cannot be read: {exc!r}", _HINT) from None
    if not isinstance(found, Applied):
        raise StorageError(f"{old} holds a {type(found).__name__}, not an applied spec", _HINT)
    try:
        applied_document(found)
    except (TypeError, AttributeError) as exc:  # AttributeError: a field added since, without a plain default
        raise StorageError(f"the applied spec {old} cannot be converted to format {FORMAT}: {exc}", _HINT) from None
    try:
        new = write_spec_file(data_dir, found)
    except OSError as exc:
        raise StorageError(f"could not write the converted applied spec beside {old}: {exc}", "run it where the data directory is writable") from exc
    log.info("converted the applied spec %s to %s (format %d), revision %s", old, new, FORMAT, found.revision)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="the data directory (searchd serve --data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(args.data_dir)
    except StorageError as exc:
        print(f"error: {exc.problem}\n  fix: {exc.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
