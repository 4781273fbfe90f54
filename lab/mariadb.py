"""Two MariaDB servers standing in for RDS: a primary, and a read-only replica fed by GTID.

RDS creates the database, the master user with its managed password, and the replica's
replication; here the lab does the same by hand: the database and user the program declares
(`DATABASE_NAME`, `MASTER_USERNAME`), a random password in a 0600 file in the state folder
(the lab's stand-in for the secret), and asynchronous GTID replication like RDS MySQL's, over
TLS. Like RDS with web-infra's parameter group, the servers refuse TCP without TLS; their
certificate comes from the lab's own CA (lab/certificates.py), which the app verifies as it
does the RDS CA bundle.

Administration goes through the `mariadb` client on each server's Unix socket as the OS user
that owns the lab, so no admin password exists at all.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.database import MAX_CONNECT_ERRORS
from components.web_infrastructure import DATABASE_NAME, MASTER_USERNAME
from lab.certificates import TlsFiles
from lab.localize import LabError
from lab.processes import program
from lab.topology import Host

REPLICATION_USER = "replication"


@dataclass(frozen=True)
class Server:
    host: Host
    directory: Path
    server_id: int

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def socket(self) -> Path:
        return self.directory / "mysqld.sock"

    @property
    def log(self) -> Path:
        return self.directory / "mariadbd.log"


def _os_user() -> str:
    # mariadbd refuses to run as root; as root the lab runs it as Debian's mysql user.
    return "mysql" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def initialise(server: Server) -> None:
    server.directory.mkdir(parents=True, exist_ok=True)
    (server.directory / "tmp").mkdir(exist_ok=True)
    user = _os_user()
    if os.geteuid() == 0:
        shutil.chown(server.directory, user, user)
        shutil.chown(server.directory / "tmp", user, user)
    result = subprocess.run(  # noqa: S603
        [
            program("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={server.datadir}",
            f"--user={user}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise LabError(
            f"mariadb-install-db failed for {server.host.name}:\n{result.stdout}{result.stderr}"
        )


def server_command(server: Server, *, replica: bool, tls: TlsFiles | None = None) -> list[str]:
    command = [
        program("mariadbd"),
        "--no-defaults",
        f"--datadir={server.datadir}",
        f"--socket={server.socket}",
        f"--pid-file={server.directory / 'mariadbd.pid'}",
        f"--tmpdir={server.directory / 'tmp'}",
        f"--bind-address={server.host.address}",
        f"--port={server.host.port}",
        f"--user={_os_user()}",
        f"--server-id={server.server_id}",
        "--skip-name-resolve",
        # As the stack's parameter group: a hang must not get the web nodes' host blocked.
        f"--max-connect-errors={MAX_CONNECT_ERRORS}",
        "--character-set-server=utf8mb4",
        "--innodb-buffer-pool-size=64M",
        # GTID replication in row format, as RDS MySQL replicas use.
        "--log-bin=binlog",
        "--binlog-format=ROW",
        "--gtid-strict-mode=1",
        f"--log-basename={server.host.name}",
    ]
    if replica:
        # Read-only like an RDS replica; notice a dead primary fast, and reconnect by itself.
        command += ["--read-only=1", "--slave-net-timeout=5"]
    if tls is not None:
        # TLS required on every TCP connection, as the web-infra parameter group makes RDS do
        # (the admin's Unix socket is exempt).
        command += [
            f"--ssl-ca={tls.ca}",
            f"--ssl-cert={tls.certificate}",
            f"--ssl-key={tls.key}",
            "--require-secure-transport=ON",
        ]
    return command


def sql(
    server: Server, statements: str, *, check: bool = True, names: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run SQL as the local admin over the Unix socket; statements go on stdin, not argv."""
    user = pwd.getpwuid(os.geteuid()).pw_name  # unix_socket auth: the OS user is the DB user
    result = subprocess.run(  # noqa: S603
        [
            program("mariadb"),
            f"--socket={server.socket}",
            f"--user={user}",
            "--batch",
        ]
        + ([] if names else ["--skip-column-names"]),
        input=statements,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check and result.returncode != 0:
        raise LabError(f"SQL on {server.host.name} failed: {result.stderr.strip()}")
    return result


def create_database_and_users(
    primary: Server, *, database: str, username: str, password: str, clients: str
) -> str:
    """The database, the master user and a replication user, as RDS creates them, for clients
    from the host pattern `clients`; returns the replication user's (new, random) password."""
    replication_password = secrets.token_urlsafe(24)
    sql(
        primary,
        f"""
        CREATE DATABASE IF NOT EXISTS {database} CHARACTER SET utf8mb4;
        CREATE USER '{username}'@'{clients}' IDENTIFIED BY '{password}';
        GRANT ALL PRIVILEGES ON {database}.* TO '{username}'@'{clients}';
        CREATE USER '{REPLICATION_USER}'@'{clients}' IDENTIFIED BY '{replication_password}';
        GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'{clients}';
        """,
    )
    return replication_password


def set_up_primary(primary: Server, credentials: Path) -> str:
    """Database, app user and replication user, as RDS creates them; returns the repl password.
    The app user's password goes to `credentials` (0600), the lab's stand-in for the secret."""
    app_password = secrets.token_urlsafe(24)
    replication_password = create_database_and_users(
        primary,
        database=DATABASE_NAME,
        username=MASTER_USERNAME,
        password=app_password,
        clients="127.%",
    )
    credentials.touch(mode=0o600)
    credentials.write_text(json.dumps({"username": MASTER_USERNAME, "password": app_password}))
    return replication_password


def start_replication(replica: Server, primary: Host, replication_password: str) -> None:
    sql(
        replica,
        f"""
        CHANGE MASTER TO MASTER_HOST='{primary.address}', MASTER_PORT={primary.port},
          MASTER_USER='{REPLICATION_USER}', MASTER_PASSWORD='{replication_password}',
          MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_SSL=1;
        START SLAVE;
        """,
    )


def replication_status(replica: Server) -> dict[str, str]:
    """SHOW SLAVE STATUS as a dict; empty when the replica does not answer."""
    result = sql(replica, "SHOW SLAVE STATUS", check=False, names=True)
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) < 2:
        return {}
    return dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=False))


def replication_summary(replica: Server) -> str:
    status = replication_status(replica)
    if not status:
        return "replica down"
    io, sql_thread = status.get("Slave_IO_Running"), status.get("Slave_SQL_Running")
    if io == "Yes" and sql_thread == "Yes":
        return f"replicating, {status.get('Seconds_Behind_Master', '?')} s behind"
    if sql_thread == "Yes":
        return f"waiting for the primary (IO: {io})"
    return f"stopped (IO: {io}, SQL: {sql_thread}): {status.get('Last_Error', '')}".strip()


def gtid_position(server: Server, variable: str) -> str:
    return sql(server, f"SELECT @@{variable}").stdout.strip()


def has_applied(replica: Server, position: str) -> bool:
    """Whether the replica has applied every transaction up to the primary's GTID `position`
    (it may be further along: the app's heartbeat keeps writing)."""
    answer = sql(replica, f"SELECT MASTER_GTID_WAIT('{position}', 0)", check=False)
    return answer.returncode == 0 and answer.stdout.strip() == "0"
