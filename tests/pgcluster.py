"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl on a Unix socket in a temporary directory.

Debian's postgresql-15 package provides the binaries (``PG_BIN`` overrides where they are).
PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user the
package creates.  Each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
HOW_TO_ENABLE = "apt-get install postgresql-15 (or set PG_BIN to PostgreSQL's bin directory) to run the PostgreSQL-backend tests"


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
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="searchd-pg-"))
        self.data, self.socket = self.root / "data", self.root / "socket"
        self.socket.mkdir()
        self.owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.owner:
            os.chmod(self.root, 0o711)
            for path in (self.root, self.socket):
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
        self._names = itertools.count()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            # Throwaway data: no fsync (the durability of commits is PostgreSQL's, not what these tests check).
            conf.write(f"listen_addresses = ''\nunix_socket_directories = '{self.socket}'\nport = 5432\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\nmax_connections = 200\n")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        self.admin = psycopg.connect(self.url("postgres"), autocommit=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(PG_BIN / program), *args]
        if self.owner:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}&port=5432"

    def new_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template`` (which nobody may be connected to)."""
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
