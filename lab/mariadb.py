"""Two MariaDB servers standing in for RDS: a primary, and a read-only replica fed by GTID.

RDS creates the database, the master user with its managed password, and the replica's
replication; here the lab does the same by hand: the database and master user the program
declares (`DATABASE_NAME`, `MASTER_USERNAME`, with RDS's master privileges), and asynchronous
GTID replication like RDS MySQL's, over TLS. Then, as `pulumi up` does with the database
bootstrap function, the program's own code (`components.functions.app_db_user`) logs in as the
master and makes the app's schema and user (`APP_USERNAME`: DML on its two tables, TLS
required); the app's password goes to a 0600 file in the state folder, the lab's stand-in for
the app's secret. Like RDS with web-infra's parameter group, the servers refuse TCP without
TLS; their certificate comes from the lab's own CA (lab/certificates.py), which the app
verifies as it does the RDS CA bundle.

The lab's own administration goes through the `mariadb` client on each server's Unix socket as
the OS user that owns the lab; the master user's random password serves the bootstrap once and
is not kept.
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
from components.functions import app_db_user
from components.rendered_hosts import APP_USERNAME, DATABASE_NAME, MASTER_USERNAME
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
            # Passed on to the bootstrap server: its temporary tables go to the server's own
            # folder, not the machine's shared /tmp, where labs booting side by side left
            # "Could not remove temporary table '/tmp/#sql-temptable-...'" failures.
            f"--tmpdir={server.directory / 'tmp'}",
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


# What RDS MySQL grants its master user: everything on every schema, users and grants, but
# no SUPER (so the lab's master can do what it can do on RDS, and no more of what matters here).
RDS_MASTER_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, "
    "SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, "
    "REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, "
    "EVENT, TRIGGER"
)


@dataclass(frozen=True)
class Login:
    username: str
    password: str

    @staticmethod
    def new(username: str) -> Login:
        return Login(username, secrets.token_urlsafe(24))

    def write(self, path: Path) -> None:
        """As the app reads its secret: {"username", "password"}, in a 0600 file."""
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps({"username": self.username, "password": self.password}))


def create_database_and_users(
    primary: Server,
    *,
    database: str,
    master: Login,
    app: Login,
    clients: str,
    ca_file: Path,
) -> str:
    """What RDS creates (the database, the master user, a replication user), then the app's
    user made by the program's database bootstrap (`app_db_user.ensure_app_user`), which logs
    in as the master over TLS (verified against `ca_file`), as on AWS. Every user is for
    clients from the host pattern `clients`; returns the replication user's (new, random)
    password."""
    replication_password = secrets.token_urlsafe(24)
    sql(
        primary,
        f"""
        CREATE DATABASE IF NOT EXISTS {database} CHARACTER SET utf8mb4;
        CREATE USER '{master.username}'@'{clients}' IDENTIFIED BY '{master.password}';
        GRANT {RDS_MASTER_PRIVILEGES} ON *.* TO '{master.username}'@'{clients}'
          WITH GRANT OPTION;
        CREATE USER '{REPLICATION_USER}'@'{clients}' IDENTIFIED BY '{replication_password}';
        GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'{clients}';
        """,
    )
    create_app_user(
        primary, database=database, master=master, app=app, clients=clients, ca_file=ca_file
    )
    return replication_password


def create_app_user(
    primary: Server,
    *,
    database: str,
    master: Login,
    app: Login,
    clients: str,
    ca_file: Path,
) -> dict[str, object]:
    """The program's database bootstrap, run against `primary`: the app's schema and user."""
    return app_db_user.ensure_app_user(
        host=primary.host.address,
        port=primary.host.port,
        master_user=master.username,
        master_password=master.password,
        database=database,
        app_user=app.username,
        app_password=app.password,
        ca_file=str(ca_file),
        # The lab's certificates name the servers by their stack names, not their addresses.
        check_hostname=False,
        clients=clients,
    )


def set_up_primary(primary: Server, credentials: Path, ca_file: Path) -> str:
    """Database, master, replication and app users; returns the replication password. The
    app user's secret goes to `credentials` (0600), the lab's stand-in for its secret; the
    master's password, which no host may know, is not kept."""
    app = Login.new(APP_USERNAME)
    replication_password = create_database_and_users(
        primary,
        database=DATABASE_NAME,
        master=Login.new(MASTER_USERNAME),
        app=app,
        clients="127.%",
        ca_file=ca_file,
    )
    app.write(credentials)
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
