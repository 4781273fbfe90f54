"""A database host of `dbMode: ec2`: MariaDB on its own data volume, GTID replication over TLS,
backups to S3.

The host's settings are in a JSON file cloud-init writes (`--config`, no secrets in it): its
role (primary or replica), server id, the primary's name, the data volume, the Secrets Manager
secrets it reads (the users' passwords, the server's TLS key), its TLS files and the backup
bucket. Subcommands, each ending with one clear line on failure, every wait bounded:

- `install`: find the data volume, format it only if it holds no filesystem, mount it (fstab,
  `nofail`), write the server's TLS key and MariaDB's settings (datadir on the volume, binary
  log, GTID, TLS required, read-only on the replica), initialise an empty datadir, write the
  backup timers and start MariaDB. MariaDB is restarted only when its settings or key changed.
- `bootstrap`: the primary creates the app's database and tables and three users, all with TLS
  required: the hosts' admin, the replication user and the app's user (the rights
  components/functions/app_db_user.py gives it on RDS); a user whose password and TLS are as
  they should be is left alone. When no full backup is in S3 yet, it takes the first. The
  replica, when it has no replication state, waits for the primary and a full backup, restores
  that backup into its datadir and replicates from the backup's GTID position over verified
  TLS. On a host already set up, bootstrap changes nothing.
- `backup`: on the primary, a full `mariadb-backup` streamed to
  s3://bucket/prefix/full/<UTC time>.xbstream (a failed backup leaves no object).
- `ship-binlogs`: on the primary, rotate the binary log when transactions were written since
  the last rotation, then upload the closed binary logs not yet in s3://bucket/prefix/binlog/.
- `restore --to DATADIR [--at TIME]`: the latest full backup (before TIME), prepared into an
  empty DATADIR, ready for MariaDB; with `--binlogs DIR`, the shipped binary logs written after
  it too, for a replay with mariadb-binlog.
- `check`: MariaDB answers, and on the replica both replication threads run.
- `replication-report`: on the replica (a timer runs it every minute), publish to CloudWatch
  whether both replication threads run (`ReplicationRunning`, 1 or 0) and, while MariaDB
  knows it, how far the replica is behind (`ReplicationLagSeconds`, `Seconds_Behind_Master`),
  under the host's own `Node` in the stack's namespace (the config's `metrics`). The alarms
  on them are the metric catalogue's (userdata/metric_catalog/table/database_hosts.py).

Restoring a host's data from the bucket (as root on a database host, or any host with
mariadb-backup and the bucket's read rights):

    python3 database_node.py restore --to /srv/database/mysql.restored \
        --binlogs /srv/database/binlogs [--at 2026-12-03T10:00:00Z]
    systemctl stop mariadb
    mv /srv/database/mysql /srv/database/mysql.before-restore
    mv /srv/database/mysql.restored /srv/database/mysql
    chown -R mysql:mysql /srv/database/mysql && systemctl start mariadb

then, for the transactions after the backup, the mariadb-binlog command the restore printed
(it starts at the backup's GTID position and stops at `--at`). On the primary, `backup` then
makes the restored data the newest backup, and the replica is seeded again from it: stop
MariaDB there, empty its datadir, and run `install` and `bootstrap`.

Retention is the bucket's lifecycle rule, not this script's. The primary keeps its own binary
logs as long as the backups are kept, so a replica seeded from any kept backup finds on the
primary every transaction since. Passwords and the key go to MariaDB on standard input or in a
0600 file, never in a command line, a log line or an error. Runs with the system Python and
Ubuntu's python3-boto3; MariaDB is administered as root over its Unix socket.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CONFIG = "/etc/web-infra/database.json"
SCRIPT = "/usr/local/lib/web-infra/database_node.py"
DEVICE_LINK = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume}"
DEVICE_FALLBACKS = ("/dev/xvdf", "/dev/sdf")  # the attachment's name on Xen instances
SERVER_CONFIG = "/etc/mysql/mariadb.conf.d/60-web-infra.cnf"
SOCKET = "/run/mysqld/mysqld.sock"
FSTAB = "/etc/fstab"
UNIT_DIR = "/etc/systemd/system"
SERVICE = "mariadb.service"
MYSQL_USER = "mysql"
MAX_CONNECT_ERRORS = 1_000_000  # as the stack's RDS parameter group (components.database)
PORT = 3306
FILESYSTEM_LABEL = "database"
BACKUP_UNIT, BINLOG_UNIT = "database-backup", "database-binlogs"
REPORT_UNIT = "database-replication-report"
"""The replica's timer and service: `replication-report` every minute."""
RUNNING_METRIC = "ReplicationRunning"
LAG_METRIC = "ReplicationLagSeconds"
NODE_DIMENSION = "Node"

VOLUME_WAIT_SECONDS = 300.0
SERVER_WAIT_SECONDS = 300.0
SERVICE_START_SECONDS = 900.0
SECRET_WAIT_SECONDS = 120.0  # the role's policy may reach IAM a little after the instance boots
PRIMARY_WAIT_SECONDS = 600.0
"""The replica's wait for the primary and its first backup, together. The primary takes that
backup before it reports ready, and the replica's instance is created only after the
primary's gate passed: the wait covers the records and firewall settling, and a primary
restarting meanwhile, well inside the replica's own gate (readinessTimeoutMinutes, 15 by
default, for the packages, install, this wait, the seeding and the readiness report)."""
REPLICATION_WAIT_SECONDS = 120.0
COMMAND_TIMEOUT_SECONDS = 120.0
BACKUP_TIMEOUT_SECONDS = 6 * 3600.0
POLL_SECONDS = 2.0
UPLOAD_PART_BYTES = 32 << 20  # 320 GiB at most in 10,000 parts; two parts in memory at once
CONNECT_TIMEOUT_SECONDS = 10

# The app's tables and rights: components/functions/app_db_user.py's SCHEMA and GRANTS (a test
# keeps them equal).
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  text VARCHAR(500) NOT NULL,
  written_by VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  idempotency_key VARCHAR(64) NULL,
  UNIQUE KEY idempotency_key (idempotency_key)) CHARACTER SET utf8mb4""",
    "CREATE TABLE IF NOT EXISTS heartbeat (id TINYINT PRIMARY KEY, ts DATETIME(6) NOT NULL)",
    "INSERT IGNORE INTO heartbeat VALUES (1, UTC_TIMESTAMP(6))",
    "ALTER TABLE messages ADD COLUMN idempotency_key VARCHAR(64) NULL",
    "ALTER TABLE messages ADD UNIQUE KEY idempotency_key (idempotency_key)",
)
GRANTS = {"messages": ("SELECT", "INSERT"), "heartbeat": ("SELECT", "UPDATE")}
ALREADY_THERE = ("ERROR 1060", "ERROR 1061")
ACCESS_DENIED = (
    "1045"  # the primary's answer to a wrong password  # duplicate column, duplicate key name
)
IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,32}")
ADMIN_PRIVILEGES = "ALL PRIVILEGES"
BINLOG_INFO = ("mariadb_backup_binlog_info", "xtrabackup_binlog_info")
SHIPPED_STATE = "binlog-shipped-gtid"
"""In the mount: the GTID position at the last rotation by ship-binlogs."""


class Failure(Exception):
    """A step failed; its message is the one line the script ends with."""


def log(message: str) -> None:
    print(f"database-node: {message}", file=sys.stderr, flush=True)


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """`probe()` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise Failure(f"{what}: still not after {timeout:g} s")
        time.sleep(POLL_SECONDS)


# --- the config -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    role: str
    host_name: str
    server_id: int
    region: str
    database: str
    primary_host: str
    volume_id: str
    mount: Path
    secrets: dict[str, str]
    tls: dict[str, str]
    backup: dict[str, Any]
    bind_address: str = "0.0.0.0"  # noqa: S104 - the web tier and the peer connect over TLS
    clients: str = "%"
    metrics_namespace: str = ""
    """The stack's CloudWatch namespace, where the replica reports its replication."""
    max_connections: int = 151
    """Every connection the largest web tier may open (the program's setting; 151 is
    MariaDB's own default)."""

    @property
    def primary(self) -> bool:
        return self.role == "primary"

    @property
    def datadir(self) -> Path:
        return self.mount / "mysql"

    @property
    def bucket(self) -> str:
        return str(self.backup["bucket"])

    def key(self, *parts: str) -> str:
        prefix = str(self.backup.get("prefix", "database/")).strip("/")
        return "/".join([prefix, *parts]) if prefix else "/".join(parts)

    @staticmethod
    def load(path: str) -> Config:
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as error:
            raise Failure(f"cannot read the config {path}: {error}") from None
        try:
            config = Config(
                role=raw["role"],
                host_name=raw["host_name"],
                server_id=int(raw["server_id"]),
                region=raw["region"],
                database=raw["database"],
                primary_host=raw["primary_host"],
                volume_id=raw["volume_id"],
                mount=Path(raw["mount"]),
                secrets=dict(raw["secrets"]),
                tls=dict(raw["tls"]),
                backup=dict(raw["backup"]),
                bind_address=raw.get("bind_address", "0.0.0.0"),  # noqa: S104
                clients=raw.get("clients", "%"),
                metrics_namespace=str(raw.get("metrics", {}).get("namespace", "")),
                max_connections=int(raw.get("max_connections", 151)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise Failure(f"the config {path} lacks or mistypes {error}") from None
        if config.role not in ("primary", "replica"):
            raise Failure(f"the config's role is {config.role!r}, not primary or replica")
        if not IDENTIFIER.fullmatch(config.database):
            raise Failure(f"the database name {config.database!r} is not a plain identifier")
        for name in ("admin", "replication", "app"):
            if name not in config.secrets:
                raise Failure(f"the config names no {name} secret")
        return config


# --- AWS --------------------------------------------------------------------------------------


def client(service: str, region: str) -> Any:
    import boto3  # noqa: PLC0415 - the host's python3-boto3
    from botocore.config import Config as BotoConfig  # noqa: PLC0415

    config = BotoConfig(connect_timeout=5, read_timeout=60, retries={"total_max_attempts": 4})
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client(service, region_name=region, endpoint_url=endpoint, config=config)


def secret(config: Config, secret_id: str) -> str:
    """A secret's string, asked again until SECRET_WAIT_SECONDS; an error names the call's
    failure, never a value."""
    secrets = client("secretsmanager", config.region)
    deadline = time.monotonic() + SECRET_WAIT_SECONDS
    while True:
        try:
            return str(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
        except Exception as error:
            response = getattr(error, "response", None) or {}
            code = response.get("Error", {}).get("Code", type(error).__name__)
            if time.monotonic() >= deadline:
                raise Failure(f"reading the secret {secret_id} failed: {code}") from None
            log(f"reading the secret {secret_id} failed ({code}); asking again")
            time.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Login:
    username: str
    password: str

    @staticmethod
    def of(config: Config, name: str) -> Login:
        try:
            value = json.loads(secret(config, config.secrets[name]))
            login = Login(str(value["username"]), str(value["password"]))
        except (ValueError, KeyError, TypeError):
            raise Failure(f"the {name} secret is not JSON with a username and a password") from None
        if not IDENTIFIER.fullmatch(login.username) or not login.password:
            raise Failure(f"the {name} secret's username is not plain or its password is empty")
        return login


class Backups:
    """The backup bucket's objects under the config's prefix."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.s3 = client("s3", config.region)

    def keys(self, *folder: str) -> list[tuple[str, datetime.datetime]]:
        prefix = self.config.key(*folder) + "/"
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=prefix
        ):
            found += [(item["Key"], item["LastModified"]) for item in page.get("Contents", [])]
        return sorted(found)

    def full(self, before: datetime.datetime | None = None) -> str | None:
        """The latest full backup, by the UTC time in its name (taken before `before`)."""
        taken = [(backup_time(key), key) for key, _ in self.keys("full")]
        kept = [(t, key) for t, key in taken if t is not None and (before is None or t <= before)]
        return max(kept)[1] if kept else None


def backup_time(key: str) -> datetime.datetime | None:
    found = re.search(r"/(\d{8}T\d{6}Z)\.xbstream$", key)
    if not found:
        return None
    return datetime.datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)


# --- the host: paths under --root, systemd and mount ------------------------------------------


class Host:
    """The operating system's side. Every absolute path of the host is taken under `root`
    ("/" on a host; a folder in the tests)."""

    def __init__(self, root: str = "/") -> None:
        self.root = Path(root)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def socket(self) -> Path:
        return self.path(SOCKET)

    def server_config(self) -> Path:
        return self.path(SERVER_CONFIG)

    def systemctl(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        # mariadb.service's own start timeout: InnoDB may recover a crashed server's log first.
        return run(["systemctl", *arguments], check=False, timeout=SERVICE_START_SECONDS)

    def mounted(self, mount: Path) -> bool:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == str(mount) for line in f if len(line.split()) > 1)

    def mount(self, mount: Path) -> None:
        """Mount `mount` by its fstab line."""
        if not self.mounted(mount):
            run(["mount", str(mount)])


def run(
    command: list[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(  # noqa: S603 - our own commands, no shell
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise Failure(f"{command[0]} did not finish in {timeout:g} s") from None
    except OSError as error:
        raise Failure(f"{command[0]} could not run: {error}") from None
    if check and result.returncode != 0:
        raise Failure(f"{' '.join(command[:2])} failed: {first_error(result)}")
    return result


def first_error(result: subprocess.CompletedProcess[str]) -> str:
    """The line that says what went wrong: the first [ERROR] of MariaDB's tools, else the last."""
    lines = (result.stderr or result.stdout).strip().splitlines()
    errors = [line for line in lines if "[ERROR]" in line or line.startswith("ERROR")]
    return (errors or lines or [f"exit {result.returncode}"])[0 if errors else -1].strip()


def write_file(path: Path, text: str, mode: int = 0o644, owner: str | None = None) -> bool:
    """Atomically; True if the content changed."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.chmod(temporary, mode)
        if owner is not None:
            shutil.chown(temporary, owner, owner)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


# --- MariaDB through its client ---------------------------------------------------------------


def quote(value: str) -> str:
    """A SQL string literal (the server's default sql_mode: backslash escapes)."""
    if "\x00" in value:
        raise Failure("a value for SQL holds a NUL character")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def os_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name  # unix_socket auth: the OS user is the DB user


def sql(
    host: Host,
    statements: str,
    *,
    check: bool = True,
    hidden: tuple[str, ...] = (),
    names: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Statements on the local server's socket, on standard input; `hidden` values (passwords)
    never reach an error message."""
    result = run(
        ["mariadb", f"--socket={host.socket()}", f"--user={os_user()}", "--batch"]
        + ([] if names else ["--skip-column-names"]),
        input=statements,
        check=False,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )
    if check and result.returncode != 0:
        raise Failure(f"MariaDB refused: {redact(result.stderr.strip(), hidden)}")
    return result


def redact(text: str, hidden: tuple[str, ...]) -> str:
    """The error's last line, without the hidden values, as given or as quoted for SQL."""
    for value in hidden:
        for form in sorted({value, quote(value)[1:-1]}, key=len, reverse=True):
            if form:
                text = text.replace(form, "***")
    return text.splitlines()[-1] if text else "no message"


def value(host: Host, query: str) -> str:
    return sql(host, query).stdout.strip()


def answers(host: Host) -> bool:
    return sql(host, "SELECT 1", check=False).returncode == 0


def slave_status(host: Host) -> dict[str, str]:
    result = sql(host, "SHOW SLAVE STATUS", names=True)
    lines = result.stdout.splitlines()
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=False))


def remote_answers(config: Config, login: Login) -> bool:
    """Whether the primary answers `login` over verified TLS; the password in a 0600 file."""
    with tempfile.NamedTemporaryFile("w", prefix="database-node-", suffix=".cnf") as options:
        os.chmod(options.name, 0o600)
        options.write(f"[client]\npassword={quote(login.password)}\n")
        options.flush()
        result = run(
            [
                "mariadb",
                f"--defaults-extra-file={options.name}",
                f"--host={config.primary_host}",
                f"--port={PORT}",
                f"--user={login.username}",
                f"--ssl-ca={config.tls['ca_file']}",
                "--ssl-verify-server-cert",
                f"--connect-timeout={CONNECT_TIMEOUT_SECONDS}",
                "--batch",
                "--execute=SELECT 1",
            ],
            check=False,
        )
    if result.returncode != 0:
        log(f"the primary {config.primary_host} does not answer yet: {result.stderr.strip()}")
    return result.returncode == 0


# --- install ----------------------------------------------------------------------------------


def find_device(host: Host, config: Config) -> Path:
    volume = config.volume_id.replace("-", "")
    candidates = [host.path(DEVICE_LINK.format(volume=volume))]
    candidates += [host.path(name) for name in DEVICE_FALLBACKS]

    def present() -> Path | None:
        return next((c for c in candidates if c.exists()), None)

    found: Path = wait_for(f"the data volume {config.volume_id}", present, VOLUME_WAIT_SECONDS)
    return found.resolve()


def filesystem(device: Path) -> dict[str, str]:
    """What blkid finds on `device` ({} when nothing)."""
    result = run(["blkid", "-p", "-o", "export", str(device)], check=False)
    if result.returncode == 2:  # nothing found
        return {}
    if result.returncode != 0:
        raise Failure(f"blkid could not read {device}: {result.stderr.strip() or 'no output'}")
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def prepare_volume(host: Host, config: Config) -> str:
    """Format the volume only when it holds no filesystem, mount it by fstab; its UUID."""
    device = find_device(host, config)
    found = filesystem(device)
    if not found:
        log(f"{device} holds no filesystem: formatting it ext4")
        run(["mkfs.ext4", "-q", "-L", FILESYSTEM_LABEL, str(device)], timeout=600)
        found = filesystem(device)
    if found.get("TYPE") != "ext4" or "UUID" not in found:
        what = found.get("TYPE") or found.get("PTTYPE", "something unknown")
        raise Failure(f"{device} holds {what}, not ext4: not touching it")
    uuid = found["UUID"]
    fstab = host.path(FSTAB)
    lines = fstab.read_text().splitlines() if fstab.exists() else []
    entry = f"UUID={uuid} {config.mount} ext4 defaults,nofail,noatime 0 2"
    kept = [line for line in lines if line.split()[1:2] != [str(config.mount)]]
    write_file(fstab, "\n".join([*kept, entry]) + "\n")
    config.mount.mkdir(parents=True, exist_ok=True)
    host.mount(config.mount)
    return uuid


def server_settings(host: Host, config: Config) -> str:
    retention = int(config.backup.get("retention_days", 7))
    lines = [
        "# Written by database_node.py install; the host's own settings.",
        "[mariadb]",
        f"user = {MYSQL_USER}",
        f"datadir = {config.datadir}",
        f"tmpdir = {config.mount / 'tmp'}",
        f"socket = {host.socket()}",
        f"bind_address = {config.bind_address}",
        f"port = {PORT}",
        f"server_id = {config.server_id}",
        "skip_name_resolve = ON",
        "character_set_server = utf8mb4",
        f"max_connect_errors = {MAX_CONNECT_ERRORS}",
        f"max_connections = {config.max_connections}",
        "log_bin = binlog",
        f"log_basename = {config.host_name}",
        "binlog_format = ROW",
        "gtid_strict_mode = ON",
        "log_slave_updates = ON",
        # Every binary log since the oldest kept backup stays on the primary, so a replica
        # seeded from any backup in the bucket catches up from the primary alone.
        f"expire_logs_days = {max(retention, 1) + 1}",
        "sync_binlog = 1",
        "innodb_flush_log_at_trx_commit = 1",
        "require_secure_transport = ON",
        f"ssl_ca = {config.tls['ca_file']}",
        f"ssl_cert = {config.tls['cert_file']}",
        f"ssl_key = {config.tls['key_file']}",
    ]
    if not config.primary:
        lines += ["read_only = ON", "slave_net_timeout = 10"]
    return "\n".join(lines) + "\n"


def initialise(config: Config) -> None:
    if (config.datadir / "mysql").is_dir():
        return
    config.datadir.mkdir(parents=True, exist_ok=True)
    shutil.chown(config.datadir, MYSQL_USER, MYSQL_USER)
    log(f"initialising an empty datadir in {config.datadir}")
    run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={config.datadir}",
            f"--user={MYSQL_USER}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            f"--tmpdir={config.mount / 'tmp'}",
        ],
        timeout=SERVER_WAIT_SECONDS,
    )


def units(config_path: str) -> dict[str, str]:
    command = f"/usr/bin/python3 {SCRIPT} --config {config_path}"
    service = """[Unit]
Description={description}
After=mariadb.service
Requisite=mariadb.service

[Service]
Type=oneshot
ExecStart={command} {step}
TimeoutStartSec={timeout}
"""
    timer = """[Unit]
Description={description}

[Timer]
{when}
Persistent=true

[Install]
WantedBy=timers.target
"""
    return {
        f"{BACKUP_UNIT}.service": service.format(
            description="A full backup of the database to S3",
            command=command,
            step="backup",
            timeout=int(BACKUP_TIMEOUT_SECONDS),
        ),
        f"{BACKUP_UNIT}.timer": timer.format(
            description="A daily full backup of the database",
            when="OnCalendar=daily\nRandomizedDelaySec=1h",
        ),
        f"{BINLOG_UNIT}.service": service.format(
            description="The database's closed binary logs to S3",
            command=command,
            step="ship-binlogs",
            timeout=1800,
        ),
        f"{BINLOG_UNIT}.timer": timer.format(
            description="Ship the database's binary logs every 5 minutes",
            when="OnCalendar=*:0/5",
        ),
        f"{REPORT_UNIT}.service": service.format(
            description="The replica's replication state to CloudWatch",
            command=command,
            step="replication-report",
            timeout=int(COMMAND_TIMEOUT_SECONDS),
        ),
        # Every minute, on the minute: each of the alarms' 1-minute periods gets one report.
        f"{REPORT_UNIT}.timer": timer.format(
            description="Report the replica's replication every minute",
            when="OnCalendar=minutely\nAccuracySec=1s",
        ),
    }


def timers(config: Config) -> list[str]:
    """The timers a host runs: the backups' on both (`backup` and `ship-binlogs` do nothing on
    the replica), the replication report on the replica only (the primary has none)."""
    found = [f"{BACKUP_UNIT}.timer", f"{BINLOG_UNIT}.timer"]
    return found if config.primary else [*found, f"{REPORT_UNIT}.timer"]


def start_server(host: Host) -> None:
    systemctl(host, "restart", SERVICE)
    wait_for("MariaDB answering on its socket", lambda: answers(host), SERVER_WAIT_SECONDS)


def stop_server(host: Host) -> None:
    systemctl(host, "stop", SERVICE)


def install(host: Host, config: Config, config_path: str) -> int:
    uuid = prepare_volume(host, config)
    log(f"the data volume {config.volume_id} (UUID {uuid}) is at {config.mount}")
    (config.mount / "tmp").mkdir(exist_ok=True)
    shutil.chown(config.mount / "tmp", MYSQL_USER, MYSQL_USER)
    key = secret(config, config.tls["key_secret"])
    changed = write_file(Path(config.tls["key_file"]), key, 0o600, MYSQL_USER)
    changed |= write_file(host.server_config(), server_settings(host, config))
    running = host.systemctl("is-active", "--quiet", SERVICE).returncode == 0
    if running and not answers(host):
        running = False
    fresh = not (config.datadir / "mysql").is_dir()
    if fresh and running:
        stop_server(host)  # Debian's package started it on its own datadir
        running = False
    initialise(config)
    for name, text in units(config_path).items():
        write_file(host.path(f"{UNIT_DIR}/{name}"), text)
    systemctl(host, "daemon-reload")
    systemctl(host, "enable", SERVICE)
    if changed or not running:
        start_server(host)
        log(f"MariaDB runs as the {config.role} (server id {config.server_id})")
    else:
        log("MariaDB runs with these settings already; not restarted")
    # Only now: their first run finds MariaDB running on the volume.
    systemctl(host, "enable", "--now", *timers(config))
    return 0


def systemctl(host: Host, *arguments: str) -> None:
    result = host.systemctl(*arguments)
    if result.returncode != 0:
        raise Failure(f"systemctl {' '.join(arguments)} failed: {result.stderr.strip()}")


# --- bootstrap --------------------------------------------------------------------------------


def ensure_user(host: Host, login: Login, clients: str, privileges: list[str]) -> bool:
    """Create the user, or set its password and TLS when either differs; then its grants (GRANT
    of rights it has changes nothing). True if the user was created or changed."""
    account = f"{quote(login.username)}@{quote(clients)}"
    query = (
        "SELECT COUNT(*), COALESCE(SUM(authentication_string = PASSWORD("  # noqa: S608 - quoted
        f"{quote(login.password)}) AND ssl_type = 'ANY'), 0) FROM mysql.user "
        f"WHERE User = {quote(login.username)} AND Host = {quote(clients)}"
    )
    state = value(host, query).split("\t")
    hidden = (login.password,)
    changed = False
    if state[0] == "0":
        sql(
            host,
            f"CREATE USER {account} IDENTIFIED BY {quote(login.password)} REQUIRE SSL",
            hidden=hidden,
        )
        changed = True
    elif state[1] != "1":
        sql(
            host,
            f"ALTER USER {account} IDENTIFIED BY {quote(login.password)} REQUIRE SSL",
            hidden=hidden,
        )
        changed = True
    grants = sql(host, f"SHOW GRANTS FOR {account}").stdout
    for grant in privileges:
        rights, _, target = grant.partition(" ON ")
        if not _granted(grants, rights, target):
            option = " WITH GRANT OPTION" if target.endswith(" WITH GRANT OPTION") else ""
            sql(host, f"GRANT {rights} ON {target.removesuffix(option)} TO {account}{option}")
            changed = True
    return changed


def _granted(shown: str, rights: str, target: str) -> bool:
    for line in shown.splitlines():
        found = re.match(r"GRANT (.+?) ON (\S+) TO ", line)
        if found and found.group(2) == target.replace(" WITH GRANT OPTION", ""):
            have = {r.strip() for r in found.group(1).split(",")}
            want = {r.strip() for r in rights.split(",")}
            if want <= have and ("GRANT OPTION" not in target or "WITH GRANT OPTION" in line):
                return True
    return False


def bootstrap_primary(host: Host, config: Config) -> int:
    database = config.database
    if not value(host, f"SHOW DATABASES LIKE {quote(database)}"):
        sql(host, f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
    tables = set(value(host, f"SHOW TABLES FROM `{database}`").split())
    if not set(GRANTS) <= tables:
        for statement in SCHEMA:
            result = sql(host, f"USE `{database}`;\n{statement}", check=False)
            if result.returncode != 0 and not any(e in result.stderr for e in ALREADY_THERE):
                raise Failure(f"making the app's tables failed: {first_error(result)}")
        log(f"made the app's tables in {database}")
    users = {
        "admin": [f"{ADMIN_PRIVILEGES} ON *.* WITH GRANT OPTION"],
        "replication": ["REPLICATION SLAVE ON *.*"],
        "app": [
            f"{', '.join(rights)} ON `{database}`.`{table}`" for table, rights in GRANTS.items()
        ],
    }
    for name, privileges in users.items():
        login = Login.of(config, name)
        if ensure_user(host, login, config.clients, privileges):
            log(f"the {name} user {login.username} is set (TLS required)")
    backups = Backups(config)
    if backups.full() is None:
        log("no full backup in the bucket yet: taking the first")
        take_backup(host, config, backups)
    log("the primary is set up")
    return 0


def bootstrap_replica(host: Host, config: Config) -> int:
    status = slave_status(host)
    if status:
        if status.get("Last_IO_Errno") == ACCESS_DENIED:
            # The replication password was rotated (the primary's bootstrap set the new one).
            login = Login.of(config, "replication")
            sql(
                host,
                "STOP SLAVE;\n"
                f"CHANGE MASTER TO MASTER_USER={quote(login.username)}, "
                f"MASTER_PASSWORD={quote(login.password)};\n"
                "START SLAVE;",
                hidden=(login.password,),
            )
            log("the primary refused the replication password: set the secret's, restarted")
            wait_running(host)
        elif status.get("Slave_SQL_Running") != "Yes" or status.get("Slave_IO_Running") == "No":
            sql(host, "START SLAVE")
            log("replication was set up but stopped: started it")
        else:
            log("replication is set up already; nothing to do")
        return 0
    if value(host, f"SHOW DATABASES LIKE {quote(config.database)}"):
        raise Failure(
            f"{config.datadir} holds the {config.database} database but no replication state: "
            "not overwriting it (seed it by hand, or empty the datadir)"
        )
    login = Login.of(config, "replication")
    # One bound for both waits: the replica's gate gives the whole boot readinessTimeoutMinutes.
    deadline = time.monotonic() + PRIMARY_WAIT_SECONDS
    wait_for(
        f"the primary {config.primary_host} answering the replication user",
        lambda: remote_answers(config, login),
        PRIMARY_WAIT_SECONDS,
    )
    backups = Backups(config)
    key = wait_for(
        "a full backup in the bucket", backups.full, max(deadline - time.monotonic(), 0.0)
    )
    seed = config.mount / "mysql.seed"
    if seed.exists():
        shutil.rmtree(seed)
    position = restore_into(config, backups, key, seed)
    stop_server(host)
    empty = config.mount / "mysql.empty"
    if empty.exists():
        shutil.rmtree(empty)
    config.datadir.rename(empty)
    seed.rename(config.datadir)
    chown_tree(config.datadir)
    start_server(host)
    shutil.rmtree(empty)
    log(f"seeded from {key} at GTID {position or '(none)'}")
    ca = config.tls["ca_file"]
    sql(
        host,
        f"SET GLOBAL gtid_slave_pos = {quote(position)};\n"
        f"CHANGE MASTER TO MASTER_HOST={quote(config.primary_host)}, MASTER_PORT={PORT}, "
        f"MASTER_USER={quote(login.username)}, MASTER_PASSWORD={quote(login.password)}, "
        f"MASTER_SSL=1, MASTER_SSL_CA={quote(ca)}, MASTER_SSL_VERIFY_SERVER_CERT=1, "
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=5;\n"
        "START SLAVE;",
        hidden=(login.password,),
    )

    wait_running(host)
    log(f"replicating from {config.primary_host} over TLS")
    return 0


def wait_running(host: Host) -> None:
    healthy = [0]

    def running() -> bool:
        """Both threads running in two checks in a row; a thread that stopped on an error (the
        primary no longer has the binary logs since the backup, say) ends the wait at once."""
        status = slave_status(host)
        for thread in ("IO", "SQL"):
            if status.get(f"Slave_{thread}_Running") == "No" and status.get(f"Last_{thread}_Error"):
                raise Failure(f"replication stopped: {status[f'Last_{thread}_Error']}")
        if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
            healthy[0] += 1
        else:
            healthy[0] = 0
            if status.get("Last_IO_Error"):
                log(f"replication: {status['Last_IO_Error']}")
        return healthy[0] >= 2

    wait_for("replication running", running, REPLICATION_WAIT_SECONDS)


def chown_tree(top: Path) -> None:
    shutil.chown(top, MYSQL_USER, MYSQL_USER)
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            shutil.chown(os.path.join(folder, name), MYSQL_USER, MYSQL_USER)


# --- backups ----------------------------------------------------------------------------------


@contextlib.contextmanager
def child_process(
    command: list[str], step: str, **streams: Any
) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """`command` started for the block, with the file its standard error goes to (for the
    block's message when it fails). An error in the block that is not a `Failure` already ends
    the script as one line, `<step> failed: <error>`; and a child the block leaves running is
    killed, so a backup or restore given up half-way leaves no mariadb-backup or mbstream
    writing behind it."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stderr=errors, **streams)  # noqa: S603 - no shell
        try:
            yield process, errors
        except Failure:
            raise
        except Exception as error:
            raise Failure(f"{step} failed: {error}") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


class Checked:
    """A process's standard output, which fails at its end if the process failed: an upload
    reading it is then abandoned, and no object is made."""

    def __init__(self, process: subprocess.Popen[bytes], errors: IO[bytes], what: str) -> None:
        self.process, self.errors, self.what = process, errors, what
        self.deadline = time.monotonic() + BACKUP_TIMEOUT_SECONDS

    def read(self, size: int = -1) -> bytes:
        assert self.process.stdout is not None
        if time.monotonic() > self.deadline:
            self.process.kill()
            raise Failure(f"{self.what} took longer than {BACKUP_TIMEOUT_SECONDS:g} s")
        data = self.process.stdout.read(size)
        if not data:
            code = self.process.wait(timeout=COMMAND_TIMEOUT_SECONDS)
            if code != 0:
                self.errors.seek(0)
                lines = self.errors.read().decode(errors="replace").strip().splitlines()
                raise Failure(f"{self.what} failed: {lines[-1] if lines else f'exit {code}'}")
        return data


def take_backup(host: Host, config: Config, backups: Backups) -> str:
    key = config.key(
        "full", datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ.xbstream")
    )
    command = [
        "mariadb-backup",
        f"--defaults-file={host.server_config()}",
        "--backup",
        "--stream=xbstream",
        f"--socket={host.socket()}",
        f"--user={os_user()}",
        f"--target-dir={config.mount / 'tmp'}",
    ]
    with child_process(command, f"uploading {key}", stdout=subprocess.PIPE) as (process, errors):
        backups.s3.upload_fileobj(
            Checked(process, errors, "mariadb-backup"),
            config.bucket,
            key,
            Config=transfer_config(),
        )
    log(f"full backup uploaded to s3://{config.bucket}/{key}")
    return key


def transfer_config() -> Any:
    """A stream is uploaded in parts held in memory: few, and big enough for a large datadir
    (S3 takes at most 10,000 parts)."""
    from boto3.s3.transfer import TransferConfig  # noqa: PLC0415 - the host's python3-boto3

    return TransferConfig(
        multipart_threshold=UPLOAD_PART_BYTES,
        multipart_chunksize=UPLOAD_PART_BYTES,
        max_concurrency=2,
    )


def backup(host: Host, config: Config) -> int:
    if not config.primary:
        log("this host is not the primary: no backup to take")
        return 0
    take_backup(host, config, Backups(config))
    return 0


def ship_binlogs(host: Host, config: Config) -> int:
    if not config.primary:
        log("this host is not the primary: no binary logs to ship")
        return 0
    state = config.mount / SHIPPED_STATE
    position = value(host, "SELECT @@gtid_binlog_pos")
    shipped = state.read_text().strip() if state.exists() else None
    if position != shipped:
        sql(host, "FLUSH BINARY LOGS")  # closes the log that holds the latest transactions
        write_file(state, position + "\n")
    logs = [line.split("\t")[0] for line in value(host, "SHOW BINARY LOGS").splitlines()]
    backups = Backups(config)
    there = {key.rsplit("/", 1)[-1] for key, _ in backups.keys("binlog", config.host_name)}
    uploaded = 0
    for name in logs[:-1]:  # the last one is open
        if name in there:
            continue
        key = config.key("binlog", config.host_name, name)
        try:
            backups.s3.upload_file(str(config.datadir / name), config.bucket, key)
        except Exception as error:
            raise Failure(f"uploading {key} failed: {error}") from None
        uploaded += 1
    log(f"shipped {uploaded} closed binary log(s) to s3://{config.bucket}/{config.key('binlog')}/")
    return 0


def restore_into(config: Config, backups: Backups, key: str, datadir: Path) -> str:
    """Extract and prepare the backup `key` into the new folder `datadir`; its GTID position."""
    datadir.mkdir(parents=True)
    extract = ["mbstream", "-x", "-C", str(datadir)]
    with child_process(extract, f"downloading {key}", stdin=subprocess.PIPE) as (process, errors):
        assert process.stdin is not None
        deadline = time.monotonic() + BACKUP_TIMEOUT_SECONDS
        body = backups.s3.get_object(Bucket=config.bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(1 << 20):
            process.stdin.write(chunk)
            if time.monotonic() > deadline:
                raise Failure(f"downloading {key} took longer than {BACKUP_TIMEOUT_SECONDS:g} s")
        process.stdin.close()
        code = process.wait(timeout=COMMAND_TIMEOUT_SECONDS)
        if code != 0:
            errors.seek(0)
            raise Failure(f"mbstream could not extract {key}: {errors.read().decode().strip()}")
    run(
        ["mariadb-backup", "--prepare", f"--target-dir={datadir}"],
        timeout=BACKUP_TIMEOUT_SECONDS,
    )
    return binlog_position(datadir)


def binlog_position(datadir: Path) -> str:
    """The GTID position of the backup prepared in `datadir`."""
    return binlog_start(datadir)[1]


def binlog_start(datadir: Path) -> tuple[str, str]:
    """The primary's binary log open when the backup was taken, and the backup's GTID
    position ("" when the primary had written no transaction)."""
    for name in BINLOG_INFO:
        info = datadir / name
        if info.exists():
            fields = info.read_text().split()
            if fields:
                return fields[0], fields[2] if len(fields) > 2 else ""
    raise Failure(f"the backup in {datadir} has no binary log position")


def restore(config: Config, target: Path, at: str | None, binlogs: Path | None) -> int:
    if target.exists() and any(target.iterdir()):
        raise Failure(f"{target} is not empty: restore into a new folder")
    before = parse_time(at) if at else None
    backups = Backups(config)
    key = backups.full(before)
    if key is None:
        raise Failure(
            f"no full backup in s3://{config.bucket}/{config.key('full')}/"
            + (f" before {at}" if at else "")
        )
    if target.exists():
        target.rmdir()
    position = restore_into(config, backups, key, target)
    log(
        f"restored {key} into {target} (GTID {position or 'none'}); chown it to {MYSQL_USER} "
        "and start MariaDB on it"
    )
    if binlogs is not None:
        download_binlogs(config, backups, target, binlogs, at)
    return 0


def download_binlogs(
    config: Config, backups: Backups, datadir: Path, binlogs: Path, at: str | None
) -> None:
    """The shipped binary logs from the one open at the backup's time on, and how to replay
    them onto the restored server."""
    first, position = binlog_start(datadir)
    binlogs.mkdir(parents=True, exist_ok=True)
    names = []
    source = binlog_source(backups, first)
    for key, _ in backups.keys("binlog", source) if source else []:
        name = key.rsplit("/", 1)[-1]
        if name >= first:
            backups.s3.download_file(config.bucket, key, str(binlogs / name))
            names.append(name)
    # mariadb-binlog reads the time in the host's zone, UTC on these hosts.
    stop = f" --stop-datetime='{parse_time(at):%Y-%m-%d %H:%M:%S}'" if at else ""
    log(
        f"{len(names)} binary log(s) in {binlogs}; to replay them onto the restored server: "
        f"cd {binlogs} && mariadb-binlog --start-position={position or '0-0-0'}{stop} "
        f"{' '.join(names) or '(none shipped yet)'} | mariadb"
    )


def binlog_source(backups: Backups, first: str) -> str | None:
    """The host whose shipped binary logs follow the backup: the one that shipped the log open
    when the backup was taken (the primary then; a restore may run on any database host, so
    not necessarily this one). None: that log is not shipped yet, nothing follows the backup."""
    shippers = sorted(
        {key.split("/")[-2] for key, _ in backups.keys("binlog") if key.endswith(f"/{first}")}
    )
    if len(shippers) > 1:
        raise Failure(f"{', '.join(shippers)} all shipped a binary log named {first}")
    return shippers[0] if shippers else None


def parse_time(text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Failure(
            f"--at {text!r} is not an ISO 8601 time (e.g. 2026-12-03T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


# --- check ------------------------------------------------------------------------------------


def check(host: Host, config: Config) -> int:
    if not answers(host):
        raise Failure("MariaDB does not answer on its socket")
    if config.primary:
        log("the primary answers")
        return 0
    status = slave_status(host)
    if not status:
        raise Failure("the replica has no replication set up")
    io, sql_thread = status.get("Slave_IO_Running"), status.get("Slave_SQL_Running")
    if io != "Yes" or sql_thread != "Yes":
        error = status.get("Last_IO_Error") or status.get("Last_SQL_Error") or "no error given"
        raise Failure(f"replication is not running (IO: {io}, SQL: {sql_thread}): {error}")
    log(f"replicating, {status.get('Seconds_Behind_Master', '?')} s behind")
    return 0


# --- replication report -----------------------------------------------------------------------


def replication_state(status: dict[str, str]) -> tuple[int, float | None]:
    """1 if both replication threads run (else 0: stopped, failed, or the IO thread still
    connecting), and the seconds behind the primary (None while MariaDB has no number: its
    SQL thread or its connection is down)."""
    running = int(
        status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"
    )
    behind = status.get("Seconds_Behind_Master", "")
    return running, float(behind) if behind.isdigit() else None


def replication_report(host: Host, config: Config) -> int:
    """Publish the replica's replication state; on the primary, nothing (it has none)."""
    if config.primary:
        log("this host is not the replica: no replication to report")
        return 0
    if not config.metrics_namespace:
        raise Failure("the config names no metrics namespace (metrics.namespace)")
    status = slave_status(host)  # a failure to ask MariaDB publishes nothing: no data
    running, behind = replication_state(status)
    node = [{"Name": NODE_DIMENSION, "Value": config.host_name}]
    data: list[dict[str, Any]] = [
        {"MetricName": RUNNING_METRIC, "Dimensions": node, "Value": running, "Unit": "None"}
    ]
    if behind is not None:
        data.append(
            {"MetricName": LAG_METRIC, "Dimensions": node, "Value": behind, "Unit": "Seconds"}
        )
    try:
        client("cloudwatch", config.region).put_metric_data(
            Namespace=config.metrics_namespace, MetricData=data
        )
    except Exception as error:
        response = getattr(error, "response", None) or {}
        code = response.get("Error", {}).get("Code", type(error).__name__)
        raise Failure(f"publishing to CloudWatch failed: {code}") from None
    lag = "unknown" if behind is None else f"{behind:g} s"
    log(f"reported: replication {'running' if running else 'not running'}, lag {lag}")
    return 0


# --- main -------------------------------------------------------------------------------------


def arguments() -> argparse.ArgumentParser:
    """The command line: the one cloud-init, the readiness report and the timers run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)  # the tests' host folder
    # `--config` before or after the step: cloud-init's runcmd and the readiness report give
    # it after (`database_node.py install --config ...`), the timers before.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", default=argparse.SUPPRESS, help="the host's config file")
    steps = parser.add_subparsers(dest="step", required=True)
    for name in ("install", "bootstrap", "backup", "ship-binlogs", "check", "replication-report"):
        steps.add_parser(name, parents=[after])
    back = steps.add_parser("restore", parents=[after])
    back.add_argument("--to", type=Path, required=True, help="a new, empty datadir")
    back.add_argument("--at", help="the latest full backup taken at or before this UTC time")
    back.add_argument("--binlogs", type=Path, help="also download the binary logs shipped since")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    host = Host(args.root)
    steps_of: dict[str, Callable[[Config], int]] = {
        "install": lambda config: install(host, config, args.config),
        "bootstrap": lambda config: (bootstrap_primary if config.primary else bootstrap_replica)(
            host, config
        ),
        "backup": lambda config: backup(host, config),
        "ship-binlogs": lambda config: ship_binlogs(host, config),
        "restore": lambda config: restore(config, args.to, args.at, args.binlogs),
        "check": lambda config: check(host, config),
        "replication-report": lambda config: replication_report(host, config),
    }
    try:
        return steps_of[args.step](Config.load(args.config))
    except Failure as failure:
        log(f"{args.step} failed: {failure}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
