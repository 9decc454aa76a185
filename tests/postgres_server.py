"""A real, throwaway PostgreSQL server for the tests: initdb into a temporary directory, listen on a
Unix socket only, stop at the end.

The server binaries are found on PATH or under /usr/lib/postgresql/*/bin (Debian's layout);
`scripts/test` installs Debian's `postgresql` package when neither has them. PostgreSQL refuses to
run as root, so as root the server runs as the `postgres` user the package creates. If the server
cannot start, the tests that need it fail with the reason: they are never skipped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["PostgresServer", "find_bindir"]

_TOOLS = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres, newest major version first."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(os.path.realpath(on_path)).parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)]
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in _TOOLS):
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under "
        "/usr/lib/postgresql/*/bin. Install the server (Debian: apt-get install postgresql), or run the "
        "tests with scripts/test, which installs it."
    )


def _major(path: str) -> int:
    try:
        return int(Path(path).parent.name.split(".")[0])
    except ValueError:
        return 0


class PostgresServer:
    """One server in its own temporary directory; `dsn(schema)` gives each test a schema of its own."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="codemode-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self.user = "codemode"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "PostgreSQL refuses to run as root and there is no `postgres` user to run it as "
                    "(Debian's postgresql package creates one)."
                ) from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.socket_dir.mkdir()
        self.log.touch()
        if self._as:
            os.chown(self.socket_dir, owner.pw_uid, owner.pw_gid)
            os.chown(self.log, owner.pw_uid, owner.pw_gid)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self._as, str(self.bindir / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n"
                f"server log:\n{self.log.read_text(errors='replace')[-4000:]}"
            )
        return done

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-k {self.socket_dir} -c listen_addresses='' -c max_connections=200 "
            # fsync off: a commit still reaches the OS before it is acknowledged, so a killed server
            # (`restart("immediate")`) loses nothing; only a power cut could, and tests have none.
            "-c shared_buffers=64MB -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        """Stop (in `mode`: `fast` disconnects every client; `immediate` is a crash) and start again."""
        self.stop(mode)
        self.start()

    def dsn(self, schema: str | None = None) -> str:
        """A connection string; with `schema`, every table the store creates lives in that schema."""
        dsn = f"host={self.socket_dir} dbname=postgres user={self.user}"
        if schema is not None:
            dsn += f" options='-c search_path={schema}'"
        return dsn

    def new_schema(self) -> str:
        """A fresh, empty schema: one test's private database namespace."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return name

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """The one server of this test process, started on first use and stopped at exit."""
    global _shared
    if _shared is None:
        import atexit

        server = PostgresServer()
        server.start()
        atexit.register(server.close)
        _shared = server
    return _shared
