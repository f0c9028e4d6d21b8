"""Checks on the PostgreSQL server that the tests start for themselves."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import psycopg
import pytest

import tests.postgres_server as postgres_server_module
from tests.postgres_server import PostgresServer, PostgresServerError, find_bin_dir


def libpq_url(sqlalchemy_url: str) -> str:
    """Turn a ``postgresql+psycopg://`` SQLAlchemy URL into a libpq connection URI."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def process_running(pid: int) -> bool:
    """Return whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state letter follows the command name, which is in parentheses.
    return status.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def no_client_password(monkeypatch) -> dict[str, str]:
    """Keep PGPASSWORD and ~/.pgpass from supplying a password, and return connect options."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("PGPASSFILE", raising=False)
    return {"passfile": os.devnull, "connect_timeout": "10"}


def test_admin_url_connects_over_tcp(postgres_server):
    assert postgres_server.admin_url.startswith("postgresql+psycopg://postgres:")

    with psycopg.connect(
        libpq_url(postgres_server.admin_url), connect_timeout=10
    ) as conn:
        user, address, port = conn.execute(
            "SELECT current_user, host(inet_server_addr()), inet_server_port()"
        ).fetchone()

    assert user == "postgres"
    assert address == postgres_server.host == "127.0.0.1"
    assert port == postgres_server.port


def test_server_settings(postgres_server):
    with psycopg.connect(
        libpq_url(postgres_server.admin_url), connect_timeout=10
    ) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in (
                "listen_addresses",
                "unix_socket_directories",
                "unix_socket_permissions",
                "max_connections",
                "password_encryption",
            )
        }

    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["unix_socket_directories"] == str(postgres_server.socket_dir)
    assert settings["unix_socket_permissions"] == "0700"
    assert settings["max_connections"] == "200"
    assert settings["password_encryption"] == "scram-sha-256"


def test_authentication_rules(postgres_server):
    with psycopg.connect(
        libpq_url(postgres_server.admin_url), connect_timeout=10
    ) as conn:
        rules = conn.execute(
            "SELECT type, auth_method, error FROM pg_hba_file_rules"
        ).fetchall()

    assert rules, "pg_hba.conf has no rules"
    assert all(error is None for _, _, error in rules)
    assert {method for kind, method, _ in rules if kind == "host"} == {"scram-sha-256"}
    assert {method for kind, method, _ in rules if kind == "local"} == {"trust"}


def test_host_connection_without_password_rejected(postgres_server, no_client_password):
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user="postgres",
            dbname="postgres",
            **no_client_password,
        )


def test_host_connection_wrong_password_rejected(postgres_server, no_client_password):
    with pytest.raises(
        psycopg.OperationalError, match="password authentication failed"
    ):
        psycopg.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user="postgres",
            dbname="postgres",
            password=postgres_server.password + "-wrong",
            **no_client_password,
        )


def test_unix_socket_connects_as_admin(postgres_server):
    # Only the server's OS user and root can enter the socket folder, so the
    # socket trusts them without a password.
    if os.geteuid() not in (0, postgres_server.os_user.pw_uid):
        pytest.skip("only root or the server's OS user can enter the socket folder")

    with psycopg.connect(
        host=str(postgres_server.socket_dir),
        port=postgres_server.port,
        user="postgres",
        dbname="postgres",
        connect_timeout=10,
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_server_process_not_root(postgres_server):
    pid = postgres_server.postmaster_pid()

    owner_uid = Path(f"/proc/{pid}").stat().st_uid

    assert owner_uid != 0
    assert owner_uid == postgres_server.os_user.pw_uid
    if os.geteuid() == 0:
        assert postgres_server.os_user.pw_name == "postgres"


def test_server_folder_private(postgres_server):
    folder = postgres_server.socket_dir.stat()

    assert folder.st_uid == postgres_server.os_user.pw_uid
    assert stat.S_IMODE(folder.st_mode) == 0o700


def test_server_stops_when_test_fails():
    with pytest.raises(RuntimeError, match="test failed"):
        with PostgresServer() as server:
            base_dir = server.base_dir
            pid = server.postmaster_pid()
            raise RuntimeError("test failed")

    assert not base_dir.exists()
    assert not process_running(pid)
    assert server.base_dir is None


def test_server_start_retries_taken_port(monkeypatch):
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        taken_port = occupant.getsockname()[1]
        ports = iter([taken_port, postgres_server_module.free_port()])
        monkeypatch.setattr(postgres_server_module, "free_port", lambda: next(ports))

        with PostgresServer() as server:
            port = server.port
            with psycopg.connect(libpq_url(server.admin_url), connect_timeout=10):
                pass

    assert port != taken_port


def test_missing_binaries_reported(tmp_path):
    with pytest.raises(PostgresServerError, match="postgresql package"):
        find_bin_dir(tmp_path)


def test_newest_version_chosen(tmp_path):
    for version in ("9.6", "15", "16", "notes"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "initdb").touch()

    assert find_bin_dir(tmp_path) == tmp_path / "16" / "bin"
