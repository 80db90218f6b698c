"""A throwaway PostgreSQL server for the ledger tests, started from Debian's server binaries.

`make test` installs the binaries when missing (scripts/ensure-postgres); a test run without them
fails with a message saying so, instead of silently testing SQLite only. The server lives in a
temporary directory, listens on a free loopback port and a private socket directory, runs with
durability off (fsync), and is stopped and deleted at the end of the session. PostgreSQL refuses
to run as root, so as root the directory is handed to `postgres` and the binaries run through
`runuser`.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

_RUN_AS = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the server would not start."""


def find_bindir() -> Path:
    """The directory of initdb and pg_ctl: Debian's newest /usr/lib/postgresql/*/bin, or PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on"
        " PATH; the ledger tests run against a real PostgreSQL. Run `make test` (its"
        " scripts/ensure-postgres step installs them) or `apt-get install -y"
        " --no-install-recommends postgresql`."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server; `admin_url` reaches its `postgres` database as superuser."""

    admin_url: str
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def fresh_url(self) -> str:
        """The SQLAlchemy (psycopg 3) URL of a new, empty schema of its own (a schema costs a
        millisecond, a database a tenth of a second; the ledger sees an empty database either
        way, through the connection's search_path)."""
        name = f"ledger_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        base = self.admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}?options=-csearch_path%3D{name}"


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the duration of the block."""
    bindir = find_bindir()
    as_root = os.geteuid() == 0
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # `postgres`.
    root = Path(tempfile.mkdtemp(prefix="returnbridge-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    prefix: list[str] = []
    if as_root:
        try:
            user = pwd.getpwnam(_RUN_AS)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no {_RUN_AS!r} user to run PostgreSQL as"
                " (the server refuses root); install the postgresql package, which creates it"
            ) from None
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", _RUN_AS, "--"]
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}"
                f"\n{result.stderr}\n{server_log}"
            )

    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            yield PostgresServer(admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres")
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
