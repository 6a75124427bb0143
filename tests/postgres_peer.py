"""A real PostgreSQL for the tests: Debian's ``postgresql`` package (`make postgres`),
``initdb`` into a temporary directory as an unprivileged user (``runuser -u postgres``
when the tests run as root, as CI does), ``pg_ctl start`` on a free loopback port with
its unix socket in the temporary directory, stopped by its pid.

:class:`PostgresServer` is one such server; :meth:`PostgresServer.fresh_url` gives each
test its own schema in it (``options=-csearch_path=...`` in the URL), so tests do not
see each other's rows and a server started from the command line with that URL is
isolated the same way.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.dicom_peers import free_port, wait_port

__all__ = ["CATALOGS", "PostgresServer", "bindir", "catalog_spec"]

USER = "medcompute"


def bindir() -> Path:
    """Where initdb and pg_ctl are; `make postgres` installs them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed: run `make postgres`")


def _as_user() -> list[str]:
    """The prefix that runs a PostgreSQL program as an unprivileged user."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PostgresServer:
    """One PostgreSQL server in a temporary directory, on a free loopback port.

    ``durable``: fsync as a deployment does (the benchmarks); the tests' servers skip it
    (no test cuts the machine's power, and a stopped server still writes everything)."""

    def __init__(self, *, durable: bool = False):
        self.durable = durable
        self.bin = bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="medcompute-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.pid: int | None = None
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        subprocess.run([*_as_user(), str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                        "-A", "trust", "--no-sync", "-E", "UTF8", "--locale", "C"],
                       check=True, capture_output=True)
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200")
        if not self.durable:        # the tests never lose power; a benchmark's server does fsync
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run([*_as_user(), str(self.bin / "pg_ctl"), "start", "-D", str(self.data),
                        "-l", str(self.dir / "log"), "-w", "-t", "60", "-o", opts],
                       check=True, capture_output=True)
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        wait_port(self.port)

    def stop(self) -> None:
        """Stop the server (SIGINT to its pid: fast shutdown, connections closed) and wait
        until it is gone."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _alive(self.pid):
            time.sleep(0.05)
        self.pid = None

    def fresh_url(self) -> str:
        """The URL of a new, empty schema of its own."""
        import psycopg
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.url}?options=-csearch_path%3D{name}"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs. The postmaster ``pg_ctl`` started is not this process's
    child: once it has exited it stays a zombie until the machine's init reaps it (about
    2 s here), and a zombie has ended."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:                     # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


#: The catalog backends a module-scoped server fixture runs on (``params=CATALOGS``).
CATALOGS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def catalog_spec(request) -> str:
    """``--catalog`` for a fixture parametrised with CATALOGS: "" (the data directory's
    SQLite file) or the URL of a fresh schema on the session's PostgreSQL."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgres").fresh_url()
