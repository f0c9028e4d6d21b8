"""A throwaway PostgreSQL server for the tests, run from Debian's server binaries.

The server lives in its own temporary folder and listens only on 127.0.0.1 and on
a Unix socket in that folder. When the tests run as root, the server runs as the
unprivileged ``postgres`` OS user that Debian's postgresql package creates,
because the PostgreSQL server exits with an error when started as root.
Otherwise it runs as the current user.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

POSTGRES_LIB_DIR = Path("/usr/lib/postgresql")
SERVER_OS_USER = "postgres"
ADMIN_USER = "postgres"
HOST = "127.0.0.1"
MAX_CONNECTIONS = 200
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
# Another process can take the probed free port before the server binds it.
MAX_START_ATTEMPTS = 3
# Linux stores a Unix socket path in 108 bytes including the final NUL byte
# (sun_path in unix(7)), and PostgreSQL rejects longer paths.
MAX_SOCKET_PATH_BYTES = 107
SOCKET_FILE_NAME_AT_MAX_PORT = ".s.PGSQL.65535"


class PostgresServerError(RuntimeError):
    """The test PostgreSQL server could not be found, started or stopped."""


def find_bin_dir(lib_dir: Path = POSTGRES_LIB_DIR) -> Path:
    """Return the ``bin`` folder of the newest PostgreSQL version under ``lib_dir``."""
    versions: list[tuple[tuple[int, ...], Path]] = []
    for initdb in lib_dir.glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        try:
            key = tuple(int(part) for part in version.split("."))
        except ValueError:
            continue
        versions.append((key, initdb.parent))
    if not versions:
        raise PostgresServerError(
            f"PostgreSQL server binaries not found: no {lib_dir}/<version>/bin/initdb. "
            "Install Debian's postgresql package as root with "
            "'apt-get install --no-install-recommends postgresql'. "
            "scripts/test does this itself when it runs as root."
        )
    return max(versions)[1]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def server_environment() -> dict[str, str]:
    """Return the environment for the server commands.

    PG* variables are removed so that a developer's settings cannot redirect
    pg_ctl, and LC_ALL=C keeps pg_ctl's messages in English for parsing.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class PostgresServer:
    """A PostgreSQL server in a temporary folder, started and stopped by the tests.

    Use it as a context manager, or call ``start()`` and ``stop()``. ``admin_url``
    is a SQLAlchemy URL for the ``postgres`` superuser over TCP. TCP connections
    must authenticate with a password (scram-sha-256). Unix socket connections are
    trusted, because only the server's OS user and root can enter the socket
    folder (mode 0700). ``max_connections`` sets the server setting of that name.
    """

    def __init__(
        self, bin_dir: Path | None = None, *, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.max_connections = max_connections
        self.host = HOST
        self.port: int | None = None
        self.password = secrets.token_urlsafe(24)
        self.base_dir: Path | None = None
        if os.geteuid() == 0:
            self.os_user = self._unprivileged_user()
            # Root's PATH may lack the sbin folders where Debian installs runuser.
            runuser = shutil.which("runuser") or shutil.which(
                "runuser", path="/usr/sbin:/sbin"
            )
            if runuser is None:
                raise PostgresServerError(
                    "runuser not found on PATH. The tests need it to run the "
                    f"PostgreSQL server as the {SERVER_OS_USER!r} OS user instead "
                    "of root. Debian's util-linux package provides it."
                )
            self._command_prefix = [runuser, "-u", self.os_user.pw_name, "--"]
        else:
            self.os_user = pwd.getpwuid(os.geteuid())
            self._command_prefix = []

    @staticmethod
    def _unprivileged_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(SERVER_OS_USER)
        except KeyError:
            raise PostgresServerError(
                f"OS user {SERVER_OS_USER!r} not found. The PostgreSQL server does "
                "not start as root, so the tests run it as this user, which "
                "Debian's postgresql package creates. Install that package or "
                "run the tests as a non-root user."
            ) from None

    @property
    def data_dir(self) -> Path:
        return self._require_base_dir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_base_dir()

    @property
    def log_file(self) -> Path:
        return self._require_base_dir() / "server.log"

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database as the superuser over TCP."""
        return (
            f"postgresql+psycopg://{ADMIN_USER}:{self.password}"
            f"@{self.host}:{self._require_port()}/postgres"
        )

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Create the cluster and start the server, or remove the folder again if a step fails."""
        if self.base_dir is not None:
            raise PostgresServerError(f"Server already started in {self.base_dir}.")
        started = time.monotonic()
        self.base_dir = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
        try:
            self._prepare_base_dir()
            self._init_cluster()
            self._write_config()
            self._start_postmaster()
        except BaseException:
            try:
                self.stop()
            except PostgresServerError:
                logger.exception("Cleanup failed after the server start failed")
            raise
        logger.info(
            "PostgreSQL from %s started on %s:%d as OS user %s in %.2f s (folder %s)",
            self.bin_dir,
            self.host,
            self.port,
            self.os_user.pw_name,
            time.monotonic() - started,
            self.base_dir,
        )

    def stop(self) -> None:
        """Stop the server if it is running and remove its folder.

        Raises PostgresServerError and keeps the folder for inspection when
        neither a fast nor an immediate shutdown stops the server.
        """
        if self.base_dir is None:
            return
        started = time.monotonic()
        if (self.data_dir / "postmaster.pid").exists():
            self._shut_down()
        shutil.rmtree(self.base_dir)
        logger.info(
            "PostgreSQL on port %s stopped and %s removed in %.2f s",
            self.port,
            self.base_dir,
            time.monotonic() - started,
        )
        self.base_dir = None
        self.port = None

    def postmaster_pid(self) -> int:
        """Return the process id of the running postmaster, as ``pg_ctl status`` reports it."""
        result = self._run(["pg_ctl", "status", "--pgdata", str(self.data_dir)])
        match = re.search(r"PID: (\d+)", result.stdout)
        if result.returncode != 0 or match is None:
            raise PostgresServerError(
                f"pg_ctl status reports no running server (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return int(match.group(1))

    def _require_base_dir(self) -> Path:
        if self.base_dir is None:
            raise PostgresServerError("Server not started. Call start() first.")
        return self.base_dir

    def _require_port(self) -> int:
        if self.port is None:
            raise PostgresServerError("Server not started. Call start() first.")
        return self.port

    def _run(
        self, command: list[str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program from ``bin_dir`` as the server's OS user."""
        program = str(self.bin_dir / command[0])
        return subprocess.run(
            [*self._command_prefix, program, *command[1:]],
            # The working folder must be one that the server's OS user can enter.
            cwd=self.base_dir,
            env=server_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _run_checked(self, command: list[str], timeout: float = 60) -> None:
        result = self._run(command, timeout)
        if result.returncode != 0:
            raise PostgresServerError(
                f"{command[0]} failed with exit status {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )

    def _log_tail(self, offset: int = 0) -> str:
        """Return the server log from byte ``offset`` on, at most its last 3000 characters."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return f"\nServer log {self.log_file}:\n{text[-3000:]}"

    def _prepare_base_dir(self) -> None:
        """Hand the folder to the server's OS user and check that the user can enter it."""
        base_dir = self._require_base_dir()
        socket_path = base_dir / SOCKET_FILE_NAME_AT_MAX_PORT
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise PostgresServerError(
                f"Unix socket path {socket_path} is longer than {MAX_SOCKET_PATH_BYTES} "
                "bytes. Set TMPDIR to a shorter folder such as /tmp."
            )
        if not self._command_prefix:
            return
        os.chown(base_dir, self.os_user.pw_uid, self.os_user.pw_gid)
        probe = subprocess.run(
            [
                *self._command_prefix,
                "test",
                "-w",
                str(base_dir),
                "-a",
                "-x",
                str(base_dir),
            ],
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
        if probe.returncode != 0:
            raise PostgresServerError(
                f"OS user {self.os_user.pw_name!r} cannot enter {base_dir}, because "
                "a parent folder is not traversable by that user. Set TMPDIR to a "
                "folder that every user can traverse, such as /tmp."
            )

    def _init_cluster(self) -> None:
        """Run initdb with the superuser password and the authentication methods."""
        password_file = self._require_base_dir() / "superuser-password"
        password_file.write_text(self.password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        if self._command_prefix:
            os.chown(password_file, self.os_user.pw_uid, self.os_user.pw_gid)
        try:
            self._run_checked(
                [
                    "initdb",
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    ADMIN_USER,
                    "--pwfile",
                    str(password_file),
                    "--auth-host",
                    "scram-sha-256",
                    "--auth-local",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-sync",
                ],
                timeout=120,
            )
        finally:
            password_file.unlink()

    def _write_config(self) -> None:
        """Append the test settings to postgresql.conf, where later lines win."""
        socket_dir = str(self.socket_dir).replace("'", "''")
        settings = [
            "",
            "# Test server settings, appended by tests/postgres_server.py.",
            f"listen_addresses = '{HOST}'",
            f"unix_socket_directories = '{socket_dir}'",
            "unix_socket_permissions = 0700",
            f"max_connections = {self.max_connections}",
            # The data is thrown away after the tests, so crash safety buys nothing.
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "",
        ]
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as config:
            config.write("\n".join(settings))

    def _start_postmaster(self) -> None:
        """Start the server on a free port, retrying when another process took the port."""
        for attempt in range(1, MAX_START_ATTEMPTS + 1):
            port = free_port()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            # pg_ctl --wait returns once the postmaster reports that it accepts
            # connections, or fails after --timeout seconds.
            result = self._run(
                [
                    "pg_ctl",
                    "start",
                    "--pgdata",
                    str(self.data_dir),
                    "--log",
                    str(self.log_file),
                    "--wait",
                    "--timeout",
                    str(START_TIMEOUT_SECONDS),
                    "--options",
                    f"-p {port}",
                ],
                timeout=START_TIMEOUT_SECONDS + 15,
            )
            if result.returncode == 0:
                self.port = port
                return
            log_text = self._log_tail(log_offset)
            port_taken = "could not bind" in log_text
            if not port_taken or attempt == MAX_START_ATTEMPTS:
                raise PostgresServerError(
                    f"pg_ctl start on port {port} failed with exit status "
                    f"{result.returncode} (attempt {attempt} of {MAX_START_ATTEMPTS}):\n"
                    f"{result.stdout}{result.stderr}{log_text}"
                )
            logger.warning(
                "Port %d was taken before PostgreSQL could bind it, so the start is "
                "retried on another port",
                port,
            )

    def _shut_down(self) -> None:
        """Stop the postmaster with pg_ctl, in fast mode and then in immediate mode."""
        for mode in ("fast", "immediate"):
            result = self._run(
                [
                    "pg_ctl",
                    "stop",
                    "--pgdata",
                    str(self.data_dir),
                    "--mode",
                    mode,
                    "--wait",
                    "--timeout",
                    str(STOP_TIMEOUT_SECONDS),
                ],
                timeout=STOP_TIMEOUT_SECONDS + 15,
            )
            if result.returncode == 0:
                return
            logger.error(
                "pg_ctl stop --mode %s failed with exit status %d: %s%s",
                mode,
                result.returncode,
                result.stdout,
                result.stderr,
            )
        raise PostgresServerError(
            f"PostgreSQL server in {self.data_dir} did not stop. Its folder is kept "
            f"for inspection.{self._log_tail()}"
        )
