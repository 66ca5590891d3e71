"""A throwaway PostgreSQL cluster: initdb and pg_ctl on a Unix socket in a directory of its own.

The tests start one (``tests/pgcluster.py``, the ``pg_cluster`` fixture), and so do the benchmarks
(``bench/replicas.py``, ``bench/pgvector_index.py``), which must not import the tests.  Debian's
postgresql-15 package provides the binaries (``PG_BIN`` overrides where they are).  PostgreSQL
refuses to run as root, so as root the cluster belongs to the ``postgres`` user the package creates.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
HOW_TO_ENABLE = "apt-get install postgresql-15 (or set PG_BIN to PostgreSQL's bin directory) to run the PostgreSQL-backend tests"
# Throwaway data (the tests): no fsync.  The durability of commits is PostgreSQL's, not what the tests check.
THROWAWAY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def required() -> bool:
    """In CI the PostgreSQL tests must run: a missing PostgreSQL fails them instead of skipping."""
    return bool(os.environ.get("CI")) or os.environ.get("SEARCHD_REQUIRE_POSTGRES") == "1"


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL is not installed ({PG_BIN / 'initdb'} not found): {HOW_TO_ENABLE}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to own the cluster: create one (useradd postgres), or run as another user"
    return None


class Cluster:
    """A cluster in ``root`` (a new temporary directory by default), removed with it by ``stop``.

    ``settings``: postgresql.conf values over the defaults here; ``durable``: commits synced as PostgreSQL
    does by default (what a benchmark measures) instead of the tests' throwaway settings.
    """

    def __init__(self, root: Path | None = None, settings: Mapping[str, str] | None = None, durable: bool = False) -> None:
        self.root = root if root is not None else Path(tempfile.mkdtemp(prefix="searchd-pg-"))
        self.data, self.socket = self.root / "data", self.root / "socket"
        self.socket.mkdir(parents=True)
        self.owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.owner:
            # The postgres user must reach the socket directory through a directory the caller made (root's, 0700).
            for path in ([self.root.parent] if root is not None else []) + [self.root, self.socket]:
                os.chmod(path, 0o711)
            for path in (self.root, self.socket):
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
        self._names = itertools.count()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", *([] if durable else ["--no-sync"]))
        conf = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket}'",
            "port": "5432",
            "shared_buffers": "32MB",
            "max_connections": "200",
            **({} if durable else THROWAWAY),
            **(settings or {}),
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as lines:
            lines.write("".join(f"{key} = {value}\n" for key, value in conf.items()))
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "120", "start")
        self.admin = psycopg.connect(self.url("postgres"), autocommit=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(PG_BIN / program), *args]
        if self.owner:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}&port=5432"

    @property
    def pid(self) -> int:
        """The postmaster's process id (its tree is the cluster's CPU time)."""
        return int((self.data / "postmaster.pid").read_text(encoding="utf-8").split()[0])

    def new_database(self, template: str | None = None) -> str:
        """A new database's name: empty, or a copy of ``template`` (which nobody may be connected to)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        # FILE_COPY (PostgreSQL 15+): copying the template's files beats WAL-logging them block by block, with fsync off
        # here (about half the time; a database is made for every PostgreSQL test).
        strategy = " STRATEGY = FILE_COPY" if self.admin.info.server_version >= 150000 else ""
        self.admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "") + strategy)
        return name

    def drop_database(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        self.admin.close()
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
