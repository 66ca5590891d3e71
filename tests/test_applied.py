"""The applied spec, stored behind storage/: saved without secrets, and read back from older data directories too."""

from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from types import MappingProxyType

from searchd.config import load_spec
from searchd.config.revision import revision
from searchd.modules import default_registry
from searchd.storage.applied import APPLIED_DIR, load_applied, readonly, save_applied
from tests.conftest import QUICKSTART


def test_the_applied_spec_round_trips_redacted(tmp_path: Path) -> None:
    spec = load_spec(QUICKSTART, default_registry(), environ={})
    assert load_applied(tmp_path) is None
    saved = save_applied(tmp_path, spec)
    assert saved.revision == revision(spec) and load_applied(tmp_path) == saved
    assert (tmp_path / APPLIED_DIR / "status.json").is_file()


def test_an_applied_spec_saved_before_it_moved_to_storage_still_loads(tmp_path: Path) -> None:
    """Data directories written when the applied spec lived in searchd.reload.applied name that module in their pickle."""
    saved = save_applied(tmp_path, load_spec(QUICKSTART, default_registry(), environ={}))
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=0)  # protocol 0 names classes as text lines, which can be rewritten
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: lambda m: (readonly, (dict(m),))}
    pickler.dump(saved)
    old = out.getvalue().replace(b"csearchd.storage.applied\n", b"csearchd.reload.applied\n")
    assert b"searchd.storage" not in old
    (tmp_path / APPLIED_DIR / "spec.pickle").write_bytes(old)
    assert load_applied(tmp_path) == saved
