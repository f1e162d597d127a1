"""A throwaway PostgreSQL server on loopback, for tests.

Debian's `postgresql` package provides the binaries (`make test` installs it when it is
missing). The cluster lives in a temporary directory, listens only on 127.0.0.1 and a
Unix socket inside that directory, on an ephemeral port, with `fsync=off` (a test database
need not survive a power cut), and is removed by `stop()`. As root, the server runs as the
`postgres` user (PostgreSQL refuses to run as root), through `runuser`.

    with Postgres() as pg:
        url = pg.create_database("sw_test")   # postgres://sw@127.0.0.1:PORT/sw_test
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def bindir() -> Path:
    """The newest installed server's bin directory, else where `pg_ctl` is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: `apt-get install -y postgresql` (make test does it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    USER = "sw"

    def __init__(self):
        self.bin = bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="switchyard-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.started = False

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout, cwd=self.dir)

    def start(self) -> "Postgres":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.USER, "--no-sync", "-E", "UTF8")
        return self.start_again()

    def start_again(self) -> "Postgres":
        """Starts the server (again, after a stop) on the same directory and port."""
        opts = f"-k {self.dir} -p {self.port} -h 127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{self.USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = self._run(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, "-d", database,
                        "-v", "ON_ERROR_STOP=1", "-At", "-c", sql)
        return out.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop_server(self, mode: str = "fast") -> None:
        """Stops the server but keeps its data directory: `start_again()` brings it back on
        the same directory and port. `fast` (the default) disconnects every client and
        rolls back their open transactions; `immediate` is a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", timeout=60)
        self.started = False

    def stop(self) -> None:
        if self.started:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
            except subprocess.SubprocessError:
                pass
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Postgres":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
