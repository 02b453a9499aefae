"""A throwaway PostgreSQL server for tests: a temp data dir, loopback only, trust auth, fsync off.

    with postgres_server() as server:       # or the `pg_server` / `postgres_url` pytest fixtures
        server.url    # postgresql://postgres@127.0.0.1:<port>/postgres
        server.dsn    # host=127.0.0.1 port=<port> user=postgres dbname=postgres

Uses the server binaries under /usr/lib/postgresql/*/bin (Debian's layout); tests skip when there
are none. initdb refuses to run as root, so as root the server runs as the `postgres` user.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) if x.isdigit() else x for x in Path(p).parts[-3].split(".")])
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    dbname: str
    root: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """A fresh database on this server; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        return self.url_for(dbname)


class PostgresUnavailable(RuntimeError):
    pass


@contextlib.contextmanager
def postgres_server() -> Iterator[PgServer]:
    """Start a server, yield it, stop it and delete its files (raises PostgresUnavailable without
    server binaries)."""
    bindir = pg_bin()
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                                  "(apt-get install -y postgresql)")
    root = Path(tempfile.mkdtemp(prefix="layersync-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:                      # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        os.chmod(root, 0o755)
    port = free_port()
    started = False
    try:
        subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                  "--no-sync"], check=True, capture_output=True)
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
                                  "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                                        "-c synchronous_commit=off -c full_page_writes=off",
                                  "start"], check=True, capture_output=True)
        started = True
        yield PgServer("127.0.0.1", port, "postgres", "postgres", root)
    finally:
        if started:
            subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """One server per test module (import this fixture into the module that uses it)."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def postgres_url(pg_server: PgServer) -> str:
    return pg_server.url
