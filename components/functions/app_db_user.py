"""The app's own MySQL user and its schema, made by the master user: the database bootstrap.

`ensure_app_user` is the core: given how to reach the primary as the master user, it creates
the app's schema (the tables, the heartbeat's row, the idempotency key of an older table) and
the app's user, sets its password, requires TLS of it and grants it only the statements the
app runs (web_app.py): SELECT and INSERT on `messages`, SELECT and UPDATE on `heartbeat`. No
DDL, no DELETE, no GRANT OPTION, nothing on another schema. Every statement is idempotent, so
running it again changes nothing but the password, which is how a new password is rolled out.

`handler` is the Lambda entry point (components/database_bootstrap.py runs it in the VPC
during `pulumi up`): it reads the master secret and the app's secret from Secrets Manager,
downloads the RDS CA bundle and calls `ensure_app_user`. It returns and logs no password.
The labs call `ensure_app_user` directly, on their MariaDB servers.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import tempfile
import urllib.request
from typing import Any

import pymysql

DUPLICATE_COLUMN, DUPLICATE_KEY_NAME = 1060, 1061
# The tables the app uses (userdata/app/web_app.py); the app itself has no DDL rights.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  text VARCHAR(500) NOT NULL,
  written_by VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  idempotency_key VARCHAR(64) NULL,
  UNIQUE KEY idempotency_key (idempotency_key)) CHARACTER SET utf8mb4""",
    "CREATE TABLE IF NOT EXISTS heartbeat (id TINYINT PRIMARY KEY, ts DATETIME(6) NOT NULL)",
    # The app only moves this row's time forward (UPDATE); it never inserts it.
    "INSERT IGNORE INTO heartbeat VALUES (1, UTC_TIMESTAMP(6))",
    # For a table made before idempotency keys (elsewhere they fail, as expected).
    "ALTER TABLE messages ADD COLUMN idempotency_key VARCHAR(64) NULL",
    "ALTER TABLE messages ADD UNIQUE KEY idempotency_key (idempotency_key)",
)
# What each of the app's statements needs, table by table: its reads, its writes, the beat.
GRANTS = {"messages": ("SELECT", "INSERT"), "heartbeat": ("SELECT", "UPDATE")}
# Schema and user names are identifiers in the SQL below: plain ones only.
IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,32}")
CONNECT_TIMEOUT_SECONDS = 10
AWS_TIMEOUT_SECONDS = 10


def _identifier(what: str, value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(f"{what} must be 1 to 32 letters, digits or underscores, not {value!r}")
    return value


def ensure_app_user(
    *,
    host: str,
    port: int,
    master_user: str,
    master_password: str,
    database: str,
    app_user: str,
    app_password: str,
    ca_file: str | None,
    check_hostname: bool = True,
    clients: str = "%",
) -> dict[str, Any]:
    """Connect to the primary as the master user (TLS, verified against `ca_file`; None: the
    system's CAs) and make the schema and the app's user, reachable from the host pattern
    `clients`, as described above. Returns what it granted; no password."""
    _identifier("the database name", database)
    _identifier("the app's user name", app_user)
    if not app_password:
        raise ValueError("the app's password is empty")
    tls = ssl.create_default_context(cafile=ca_file)
    tls.check_hostname = check_hostname
    connection = pymysql.connect(
        host=host,
        port=port,
        user=master_user,
        password=master_password,
        ssl=tls,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        autocommit=True,
        charset="utf8mb4",
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
            cursor.execute(f"USE `{database}`")
            for statement in SCHEMA:
                try:
                    cursor.execute(statement)
                except pymysql.MySQLError as error:
                    if error.args[0] not in (DUPLICATE_COLUMN, DUPLICATE_KEY_NAME):
                        raise
            account = (app_user, clients)
            # An existing user gets the password of this run (a rotation) and TLS again.
            for statement in (
                "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s REQUIRE SSL",
                "ALTER USER %s@%s IDENTIFIED BY %s REQUIRE SSL",
            ):
                try:
                    cursor.execute(statement, (*account, app_password))
                except pymysql.MySQLError as error:
                    # MySQL's message may quote the statement, password included: not passed on.
                    verb = statement.split(" %s", 1)[0]
                    raise RuntimeError(
                        f"{verb} {app_user} failed: MySQL error {error.args[0]}"
                    ) from None
            for table, privileges in GRANTS.items():
                cursor.execute(
                    f"GRANT {', '.join(privileges)} ON `{database}`.`{table}` TO %s@%s", account
                )
    finally:
        connection.close()
    return {
        "database": database,
        "user": f"{app_user}@{clients}",
        "grants": {table: list(privileges) for table, privileges in GRANTS.items()},
        "tls_required": True,
    }


def _secret(client: Any, secret_id: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    return value


def _download(url: str) -> str:
    """The RDS CA bundle, fetched as the web nodes fetch it (over verified HTTPS)."""
    with urllib.request.urlopen(url, timeout=AWS_TIMEOUT_SECONDS) as response:  # noqa: S310
        bundle = response.read()
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as file:
        file.write(bundle)
    return file.name


def handler(event: dict[str, Any], _context: object) -> dict[str, Any]:
    """Lambda: {"host", "port", "database", "master_secret_arn", "app_secret_arn"}; the
    environment's RDS_CA_URL names the CA bundle. An exception fails the invocation, and with
    it `pulumi up`."""
    import boto3  # noqa: PLC0415 - the Lambda runtime's; the labs never call the handler
    from botocore.config import Config  # noqa: PLC0415

    config = Config(connect_timeout=AWS_TIMEOUT_SECONDS, read_timeout=AWS_TIMEOUT_SECONDS)
    secrets = boto3.client("secretsmanager", config=config)
    master = _secret(secrets, event["master_secret_arn"])
    app = _secret(secrets, event["app_secret_arn"])
    ca_file = _download(os.environ["RDS_CA_URL"])
    try:
        done = ensure_app_user(
            host=event["host"],
            port=int(event["port"]),
            master_user=master["username"],
            master_password=master["password"],
            database=event["database"],
            app_user=app["username"],
            app_password=app["password"],
            ca_file=ca_file,
        )
    finally:
        os.unlink(ca_file)
    print(json.dumps(done))  # the function's log
    return done
