#!/usr/bin/env bash
# Builds and installs the pgvector extension for the machine's PostgreSQL 15 (Debian 12), for bench/engine.py.
# Usage (as root): bash scripts/pgvector.sh        (re-running it is safe: it stops early when vector.control is there)
#
# Debian 12 ships PostgreSQL 15 but no pgvector binary package. Debian 13 (trixie) carries pgvector as a source
# package, and its source builds against PostgreSQL 15's server headers. So:
#   1. apt-get install postgresql-server-dev-15 (headers, pg_config, PGXS) and a compiler;
#   2. apt-get source pgvector, from a deb-src list of Debian 13 kept in a temporary apt state directory
#      (the machine's own apt sources and package lists are not touched; the archive keyring checks the signature);
#   3. make && make install against /usr/lib/postgresql/15/bin/pg_config.
# Set PGVECTOR_SRC=/path/to/pgvector-source to skip step 2 and build that tree instead.
set -euo pipefail
pg_config="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
suite="${PGVECTOR_DEBIAN_SUITE:-trixie}"

if [[ ! -x "$pg_config" ]]; then
    echo "pgvector.sh: $pg_config not found: install postgresql-15 first" >&2
    exit 1
fi
have_control() { [[ -f "$("$pg_config" --sharedir)/extension/vector.control" ]]; }

missing_tools() {
    [[ ! -f "$("$pg_config" --includedir-server)/postgres.h" ]] || ! command -v make >/dev/null \
        || ! command -v gcc >/dev/null || ! command -v dpkg-source >/dev/null
}
if missing_tools; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-server-dev-15 build-essential dpkg-dev
fi
# (the headers come at the archive's current 15.x point release, and apt brings postgresql-15 along to the same one;
# an extension needs only the same major version as the server)
if have_control && [[ -z "${PGVECTOR_FORCE:-}" ]]; then
    echo "pgvector.sh: pgvector is already installed in $("$pg_config" --sharedir)/extension"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
src="${PGVECTOR_SRC:-}"
if [[ -z "$src" ]]; then
    # The Debian mirror this machine already uses (from its own sources), for a deb-src list of another suite.
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    if [[ -z "$mirror" ]]; then
        mirror="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    fi
    if [[ -z "$mirror" ]]; then
        echo "pgvector.sh: no Debian mirror found in the apt sources; set PGVECTOR_SRC to a pgvector source tree" >&2
        exit 1
    fi
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" "$suite" > "$work/apt/pgvector.sources"
    apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/apt" -o "Dir::State::Lists=$work/apt/lists"
              -o "Dir::Cache=$work/apt/cache" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" source -qq pgvector)
    src="$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)"
    if [[ -z "$src" ]]; then
        echo "pgvector.sh: apt-get source pgvector gave no source tree" >&2
        exit 1
    fi
fi
echo "pgvector.sh: building $src against $("$pg_config" --version)"
# OPTFLAGS="" : no -march=native, so the build does not depend on the build machine's CPU flags
make -C "$src" PG_CONFIG="$pg_config" OPTFLAGS="" -j"$(nproc)" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
make -C "$src" PG_CONFIG="$pg_config" install >>"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
have_control
echo "pgvector.sh: installed $(grep -m1 default_version "$("$pg_config" --sharedir)/extension/vector.control")"
