#!/usr/bin/env bash
# Creates bench/.venv (separate from the product's venv) with searchd (editable) and the peers.
# Usage: bash bench/setup.sh        (re-running it is safe: it only installs what is missing)
# bench/engine.py also compares with pgvector: `bash scripts/pgvector.sh` (as root) builds it for PostgreSQL 15.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip wheel

# CPU torch first (txtai needs torch). On these machines 'torch==2.13.0' resolves to a local
# CPU wheel; asking for plain 'torch' later would pull a multi-GB CUDA build instead.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "${pip[@]}" install "torch==2.13.0" || echo "setup.sh: torch==2.13.0 could not be installed; txtai will be skipped by bench/vectors.py" >&2
fi

"${pip[@]}" install -e "$root"

# Each peer on its own so that one that cannot be installed does not stop the others;
# bench/vectors.py prints why it skips a peer whose import fails.
while IFS= read -r req; do
    req="${req%%#*}"; req="${req//[[:space:]]/}"
    [[ -z "$req" ]] && continue
    if ! "${pip[@]}" install "$req"; then
        echo "setup.sh: could not install $req; bench/vectors.py will skip it" >&2
    fi
done < "$here/requirements.txt"

"$venv/bin/python" - <<'PY'
import importlib
for name in ("searchd", "hnswlib", "annoy", "chromadb", "txtai", "httpx", "tantivy", "bm25s", "psycopg"):
    try:
        m = importlib.import_module(name)
        print(f"  {name:10s} {getattr(m, '__version__', 'ok')}")
    except Exception as exc:  # report, do not fail: the benchmark skips what is missing
        print(f"  {name:10s} NOT AVAILABLE: {type(exc).__name__}: {exc}")
PY
