"""The database bootstrap's core (components.functions.app_db_user) against a real MariaDB.

MariaDB with TLS required, as the stack's parameter group makes RDS, and a master user with
RDS's master privileges. The app's user must be able to run every statement the app runs and
nothing else that matters: no DDL, no DELETE, no GRANT, no other schema, no plain TCP. Running
the bootstrap again must be harmless, and running it with a new password must roll it out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pymysql
import pytest
from fake_mysql import web_app
from moto import mock_aws
from system_tools import require

from components.functions import app_db_user
from lab import mariadb, processes
from lab.certificates import CertificateAuthority, TlsFiles
from lab.topology import Host

PRIMARY = Host("db-primary", "database", "127.0.43.1", 3306)
CLIENTS = "127.%"  # loopback connections come from 127.0.0.1
DATABASE = "webapp"
MASTER = mariadb.Login("webapp_admin", "master-Pa55")
APP = "webapp_app"


@dataclass
class Primary:
    server: mariadb.Server
    tls: TlsFiles

    def bootstrap(self, password: str, **changes: Any) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "host": PRIMARY.address,
            "port": PRIMARY.port,
            "master_user": MASTER.username,
            "master_password": MASTER.password,
            "database": DATABASE,
            "app_user": APP,
            "app_password": password,
            "ca_file": str(self.tls.ca),
            "check_hostname": False,
            "clients": CLIENTS,
        }
        return app_db_user.ensure_app_user(**{**arguments, **changes})

    def app(self, password: str, *, tls: bool = True) -> pymysql.Connection[Any]:
        """Connected as the app connects (web_app.database.Database._open)."""
        return pymysql.connect(
            host=PRIMARY.address,
            port=PRIMARY.port,
            user=APP,
            password=password,
            database=DATABASE,
            ssl={"ca": str(self.tls.ca), "check_hostname": False} if tls else None,
            ssl_disabled=not tls,
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )

    def admin(self, statements: str) -> str:
        return mariadb.sql(self.server, statements).stdout.strip()

    def grants(self) -> str:
        """The app user's grants, without its password's hash."""
        shown = self.admin(f"SHOW GRANTS FOR '{APP}'@'{CLIENTS}'")
        return re.sub(r"IDENTIFIED BY PASSWORD '[^']*'", "IDENTIFIED BY PASSWORD ...", shown)


def server_tls(directory: Path) -> TlsFiles:
    """A CA and the server's certificate, which names its address as RDS's names its endpoint
    (the function verifies the name; the app, which connects through an alias, does not)."""
    directory.mkdir(parents=True)
    authority = CertificateAuthority.create("bootstrap test CA")
    issued = authority.issue(["db.bootstrap.internal", PRIMARY.address])
    tls = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    authority.write_root(tls.ca)
    tls.certificate.write_bytes(issued.certificate_pem)
    tls.key.write_bytes(issued.key_pem)
    tls.key.chmod(0o600)
    return tls


@pytest.fixture(scope="module")
def primary() -> Iterator[Primary]:
    for tool in ("mariadbd", "mariadb-install-db", "mariadb"):
        require(tool)
    processes.ensure_port_free(PRIMARY.address, PRIMARY.port, PRIMARY.name)
    # Not under pytest's 0700 folders: mariadbd runs as the mysql user when we are root.
    folder = Path(tempfile.mkdtemp(prefix="db-bootstrap-"))
    folder.chmod(0o755)
    daemon = None
    try:
        tls = server_tls(folder / "tls")
        if os.geteuid() == 0:
            shutil.chown(tls.key, "mysql")
        server = mariadb.Server(PRIMARY, folder / "db-primary", 1)
        mariadb.initialise(server)
        daemon = processes.start(
            PRIMARY.name, mariadb.server_command(server, replica=False, tls=tls), server.log
        )
        if (
            processes.poll(
                lambda: mariadb.sql(server, "SELECT 1", check=False).returncode == 0, 60, step=0.2
            )
            is None
        ):
            raise AssertionError(f"MariaDB did not start: {server.log.read_text()[-2000:]}")
        site = Primary(server, tls)
        # As RDS makes it: the database named by the program and the master user.
        site.admin(
            f"""CREATE DATABASE {DATABASE};
            CREATE USER '{MASTER.username}'@'{CLIENTS}' IDENTIFIED BY '{MASTER.password}';
            GRANT {mariadb.RDS_MASTER_PRIVILEGES} ON *.* TO '{MASTER.username}'@'{CLIENTS}'
              WITH GRANT OPTION;"""
        )
        yield site
    finally:
        if daemon is not None:
            processes.stop(daemon)
        if not os.environ.get("KEEP_TEST_FOLDER"):
            shutil.rmtree(folder, ignore_errors=True)


def refused(connection: pymysql.Connection[Any], sql: str) -> int:
    """The MySQL error code the statement fails with; fails the test if it succeeds."""
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql)
        except pymysql.MySQLError as error:
            return int(error.args[0])
    raise AssertionError(f"the app's user could run: {sql}")


def test_the_app_user_runs_every_statement_the_app_runs(primary: Primary) -> None:
    """A grant missing for one of the app's statements would fail its writes or beat on AWS."""
    primary.bootstrap("first-Pa55")
    with primary.app("first-Pa55") as connection, connection.cursor() as cursor:
        cursor.execute(web_app.database.INSERT, ("hello", "web-1", "key-1"))
        written = cursor.lastrowid
        cursor.execute(web_app.database.WRITTEN + "id = %s", (written,))
        assert cursor.fetchone()["text"] == "hello"
        cursor.execute(web_app.database.WRITTEN + "idempotency_key = %s", ("key-1",))
        assert cursor.fetchone()["id"] == written
        cursor.execute(web_app.database.NEWEST, (5,))
        assert cursor.fetchall()[0]["id"] == written
        primary.admin(f"UPDATE {DATABASE}.heartbeat SET ts = ts - INTERVAL 1 SECOND")
        assert cursor.execute(web_app.database.BEAT) == 1, "the heartbeat's row exists and moves"
        cursor.execute(web_app.database.LAG)
        assert len(cursor.fetchall()) == 1


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE messages",
        "DELETE FROM messages",
        "TRUNCATE TABLE messages",
        "ALTER TABLE messages ADD COLUMN extra INT",
        "CREATE TABLE other (id INT)",
        "INSERT INTO heartbeat VALUES (2, UTC_TIMESTAMP(6))",
        "UPDATE messages SET text = 'changed'",
        "GRANT SELECT ON webapp.messages TO 'webapp_admin'@'127.%'",
        "CREATE USER 'intruder'@'%' IDENTIFIED BY 'x'",
        "SELECT user, host FROM mysql.user",
        "CREATE DATABASE other",
        "SHOW SLAVE STATUS",
    ],
)
def test_the_app_user_cannot_do_what_the_app_never_does(primary: Primary, sql: str) -> None:
    """The least-privilege promise: a stolen app password changes no schema and no grant."""
    primary.bootstrap("first-Pa55")
    with primary.app("first-Pa55") as connection:
        assert refused(connection, sql) in (1044, 1142, 1227, 1143, 1045), sql


def test_the_app_user_must_use_tls(primary: Primary) -> None:
    """REQUIRE SSL on the user itself, not only the server's require_secure_transport."""
    primary.bootstrap("first-Pa55")
    assert "REQUIRE SSL" in primary.admin(f"SHOW CREATE USER '{APP}'@'{CLIENTS}'")
    with pytest.raises(pymysql.MySQLError):
        primary.app("first-Pa55", tls=False)


def test_running_again_is_harmless_and_rotates_the_password(primary: Primary) -> None:
    """`pulumi up` re-invokes the bootstrap whenever its inputs change, the password included."""
    primary.bootstrap("first-Pa55")
    grants = primary.grants()
    assert "`webapp`.`messages`" in grants, grants
    with primary.app("first-Pa55") as connection, connection.cursor() as cursor:
        cursor.execute(web_app.database.INSERT, ("kept", "web-2", "key-kept"))
    rows = primary.admin(f"SELECT COUNT(*) FROM {DATABASE}.messages")

    assert primary.bootstrap("first-Pa55")["user"] == f"{APP}@{CLIENTS}"
    assert primary.grants() == grants
    assert primary.admin(f"SELECT COUNT(*) FROM {DATABASE}.messages") == rows, "data kept"

    primary.bootstrap("second-Pa55 with 'quotes' and \\ backslash")
    with pytest.raises(pymysql.err.OperationalError) as refused_old:
        primary.app("first-Pa55")
    assert refused_old.value.args[0] == web_app.failures.ACCESS_DENIED
    primary.app("second-Pa55 with 'quotes' and \\ backslash").close()
    assert primary.grants() == grants


def test_a_table_from_before_idempotency_keys_is_migrated(primary: Primary) -> None:
    """The app no longer alters its tables; the bootstrap brings an old one up to date."""
    primary.admin(
        f"""DROP TABLE {DATABASE}.messages;
        CREATE TABLE {DATABASE}.messages (id BIGINT AUTO_INCREMENT PRIMARY KEY,
          text VARCHAR(500) NOT NULL, written_by VARCHAR(64) NOT NULL,
          created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3));"""
    )
    primary.bootstrap("first-Pa55")
    columns = primary.admin(f"SHOW COLUMNS FROM {DATABASE}.messages")
    assert "idempotency_key" in columns
    assert "idempotency_key" in primary.admin(f"SHOW INDEX FROM {DATABASE}.messages")


@pytest.mark.parametrize(
    ("field", "value"),
    [("database", "webapp; DROP DATABASE mysql"), ("app_user", "app`"), ("app_password", "")],
)
def test_bad_names_are_refused_before_connecting(field: str, value: str) -> None:
    """Names go into the SQL as identifiers: anything but a plain one is refused first."""
    arguments: dict[str, Any] = {
        "host": "192.0.2.1",  # never reached
        "port": 3306,
        "master_user": "m",
        "master_password": "p",
        "database": "webapp",
        "app_user": "app",
        "app_password": "p",
        "ca_file": None,
    }
    with pytest.raises(ValueError, match=r"must be|empty"):
        app_db_user.ensure_app_user(**{**arguments, field: value})


def test_a_refused_user_statement_does_not_echo_the_password(primary: Primary) -> None:
    """MySQL may quote a failed statement; the bootstrap's error must not carry the password."""
    # A master that may not create users: CREATE USER is refused.
    primary.admin(
        f"""CREATE USER IF NOT EXISTS 'limited'@'{CLIENTS}' IDENTIFIED BY 'limited-Pa55';
        GRANT ALL PRIVILEGES ON {DATABASE}.* TO 'limited'@'{CLIENTS}';"""
    )
    with pytest.raises(RuntimeError) as failed:
        primary.bootstrap(
            "secret-in-the-statement",
            master_user="limited",
            master_password="limited-Pa55",
            app_user="someone_else",
        )
    assert "secret-in-the-statement" not in str(failed.value)
    assert "MySQL error" in str(failed.value)


def test_the_lambda_handler_reads_both_secrets_and_makes_the_user(
    primary: Primary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function's entry point as Lambda calls it: secrets from Secrets Manager (moto), the
    CA bundle from RDS_CA_URL, the server's name verified; its answer holds no password."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "RDS_CA_URL": primary.tls.ca.as_uri(),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # Another name than the other tests': this user is for any host ('%'), as on AWS.
    app = mariadb.Login("webapp_fn", "from-the-secret")
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="eu-west-1")
        master_arn = secrets.create_secret(
            Name="rds!db-0123", SecretString=json.dumps(MASTER.__dict__)
        )["ARN"]
        app_arn = secrets.create_secret(
            Name="web-infra-dev/database/app-user", SecretString=json.dumps(app.__dict__)
        )["ARN"]
        event = {
            "host": PRIMARY.address,
            "port": PRIMARY.port,
            "database": DATABASE,
            "master_secret_arn": master_arn,
            "app_secret_arn": app_arn,
        }
        done = app_db_user.handler(event, None)
    assert done["user"] == "webapp_fn@%"
    assert app.password not in json.dumps(done)
    assert MASTER.password not in json.dumps(done)
    pymysql.connect(
        host=PRIMARY.address,
        port=PRIMARY.port,
        user=app.username,
        password=app.password,
        database=DATABASE,
        ssl={"ca": str(primary.tls.ca)},
    ).close()
