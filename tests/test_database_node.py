"""A database host's script (userdata/scripts/database_node.py) against real MariaDB servers.

Each host is a folder standing in for its root (`--root`): its /etc, its /run/mysqld socket,
its data volume (a regular file formatted by the script, with the mount point a plain folder)
and its systemd, played by `FakeSystemd`, which runs the real `mariadbd` on the settings the
script wrote, as mariadb.service does. The primary listens on 127.0.60.1, the replica on
127.0.60.2, a restored copy on 127.0.60.3; Secrets Manager and S3 are moto's, in this process.
The tests run in order, as the hosts would: the primary installed and bootstrapped, rows
written, a backup, more rows, then the replica, seeded from the bucket, catching up and
replicating; then the binary logs, a restore, and the readiness check.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pymysql
import pytest
from moto import mock_aws

from components.database import MAX_CONNECT_ERRORS
from components.functions import app_db_user
from lab import processes
from lab.certificates import CertificateAuthority
from settings import database_hosts as database_shape
from userdata.metric_catalog.table import METRICS
from userdata.scripts import database_node

REGION = "eu-west-1"
BUCKET = "web-infra-test-backups"
NAMESPACE = "WebInfra/web-infra-test"
DATABASE = "webapp"
PRIMARY_ADDRESS = "127.0.60.1"
REPLICA_ADDRESS = "127.0.60.2"
RESTORED_ADDRESS = "127.0.60.3"
PORT = 3306
VOLUME = {"primary": "vol-0aaa1111bbbb2222c", "replica": "vol-0ddd3333eeee4444f"}
# Passwords with the characters that need quoting in SQL and in an option file.
PASSWORDS = {
    name: secrets.token_urlsafe(12) + suffix
    for name, suffix in (("admin", "'\\#a"), ("replication", '"; x'), ("app", "`$'z"))
}
USERNAMES = {"admin": "webinfra_admin", "replication": "replication", "app": "webapp_app"}


class FakeSystemd:
    """systemctl for the hosts' folders: mariadb.service runs `mariadbd` on the settings file
    the script wrote (its PID in the host's run/ folder); everything else is recorded."""

    def __init__(self) -> None:
        self.daemons: dict[Path, subprocess.Popen[bytes]] = {}
        self.calls: list[tuple[Path, tuple[str, ...]]] = []

    def running(self, root: Path) -> bool:
        daemon = self.daemons.get(root)
        return daemon is not None and daemon.poll() is None

    def systemctl(
        self, host: database_node.Host, *arguments: str
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append((host.root, arguments))
        verb, unit = arguments[0], arguments[-1]
        code = 0
        if unit == database_node.SERVICE and verb in ("restart", "stop"):
            self.stop(host.root)
            if verb == "restart":
                self.start(host)
        elif verb == "is-active":
            code = 0 if self.running(host.root) else 3
        return subprocess.CompletedProcess(["systemctl", *arguments], code, "", "")

    def start(self, host: database_node.Host) -> None:
        host.socket().parent.mkdir(parents=True, exist_ok=True)
        os.chown(host.socket().parent, *_mysql_ids())
        log = (host.root / "mariadbd.log").open("ab")
        daemon = subprocess.Popen(
            [processes.program("mariadbd"), f"--defaults-file={host.server_config()}"],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        (host.root / "mariadbd.pid").write_text(f"{daemon.pid}\n")
        self.daemons[host.root] = daemon

    def stop(self, root: Path) -> None:
        daemon = self.daemons.pop(root, None)
        if daemon is None or daemon.poll() is not None:
            return
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)

    def restarts(self, root: Path) -> int:
        return sum(1 for r, a in self.calls if r == root and a == ("restart", "mariadb.service"))


def _mysql_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(database_node.MYSQL_USER)
    return entry.pw_uid, entry.pw_gid


@dataclass
class Node:
    role: str
    address: str
    root: Path
    config: dict[str, Any]
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config_path = self.root / "etc/web-infra/database.json"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config))

    @property
    def host(self) -> database_node.Host:
        return database_node.Host(str(self.root))

    @property
    def datadir(self) -> Path:
        return Path(self.config["mount"]) / "mysql"

    def run(self, *step: str) -> int:
        return database_node.main(
            ["--root", str(self.root), "--config", str(self.config_path), *step]
        )

    def sql(self, statements: str) -> str:
        return database_node.sql(self.host, statements).stdout.strip()

    def connect(self, name: str, *, tls: bool = True, ca: Path | None = None) -> Any:
        return pymysql.connect(
            host=self.address,
            port=PORT,
            user=USERNAMES[name],
            password=PASSWORDS[name],
            database=DATABASE if name == "app" else None,
            ssl={"ca": str(ca), "check_hostname": False} if tls else None,
            ssl_disabled=not tls,
            autocommit=True,
            connect_timeout=5,
        )


@dataclass
class Cluster:
    folder: Path
    systemd: FakeSystemd
    ca: Path
    secret_arns: dict[str, str]
    s3: Any
    primary: Node
    replica: Node
    argv: list[list[str]] = field(default_factory=list)

    def objects(self, folder: str) -> list[str]:
        """The keys under database/<folder>/, each uploaded once (one version each)."""
        listed = self.s3.list_object_versions(Bucket=BUCKET, Prefix=f"database/{folder}/")
        keys = sorted(item["Key"] for item in listed.get("Versions", []))
        assert len(keys) == len(set(keys)), f"uploaded more than once: {keys}"
        return keys


def make_node(
    folder: Path, ca: Path, arns: dict[str, str], role: str, address: str, server_id: int
) -> Node:
    root = folder / role
    mount = root / "srv/database"
    device = (
        root
        / "dev/disk/by-id"
        / ("nvme-Amazon_Elastic_Block_Store_" + VOLUME[role].replace("-", ""))
    )
    device.parent.mkdir(parents=True)
    image = root / "volume.img"
    with image.open("wb") as f:
        f.truncate(32 << 20)
    device.symlink_to(image)
    config = {
        "role": role,
        "host_name": f"database-{server_id}",
        "server_id": server_id,
        "region": REGION,
        "database": DATABASE,
        "primary_host": PRIMARY_ADDRESS,
        "volume_id": VOLUME[role],
        "mount": str(mount),
        "secrets": {n: arns[n] for n in ("admin", "replication", "app")},
        "tls": {
            "ca_file": str(ca),
            "cert_file": str(folder / "tls/server.pem"),
            "key_secret": arns["key"],
            "key_file": str(root / "etc/mysql/tls/server.key"),
        },
        "backup": {"bucket": BUCKET, "prefix": "database/", "retention_days": 7},
        "bind_address": address,
        "metrics": {"namespace": NAMESPACE},
        "max_connections": database_shape.MAX_CONNECTIONS,
    }
    return Node(role, address, root, config)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    for tool in ("mariadbd", "mariadb", "mariadb-install-db", "mariadb-backup", "mbstream"):
        processes.program(tool)
    for address in (PRIMARY_ADDRESS, REPLICA_ADDRESS, RESTORED_ADDRESS):
        processes.ensure_port_free(address, PORT, f"the test's server on {address}")
    # Not under pytest's folders: the servers run as the mysql user, and pytest makes its root
    # folder 0700 again whenever another pytest run starts.
    folder = Path(tempfile.mkdtemp(prefix="database-node-"))
    folder.chmod(0o755)
    systemd = FakeSystemd()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)

        def systemctl(host: database_node.Host, *arguments: str) -> Any:
            return systemd.systemctl(host, *arguments)

        patch.setattr(database_node.Host, "systemctl", systemctl)
        patch.setattr(database_node.Host, "mount", lambda self, mount: None)
        patch.setattr(database_node, "POLL_SECONDS", 0.2)
        if os.geteuid() != 0:
            # As the lab does: MariaDB runs as the user who runs the tests.
            patch.setattr(database_node, "MYSQL_USER", pwd.getpwuid(os.geteuid()).pw_name)
        patch.setattr(database_node, "PRIMARY_WAIT_SECONDS", 60.0)
        patch.setattr(database_node, "REPLICATION_WAIT_SECONDS", 60.0)
        # S3's smallest part: the backups are uploaded in several parts, as large ones are.
        patch.setattr(database_node, "UPLOAD_PART_BYTES", 5 << 20)
        argv: list[list[str]] = []
        real_run, real_popen = subprocess.run, subprocess.Popen

        def recorded_run(command: Any, *args: Any, **kwargs: Any) -> Any:
            argv.append(list(command))
            return real_run(command, *args, **kwargs)

        class RecordedPopen(real_popen):  # type: ignore[misc,valid-type]
            def __init__(self, command: Any, *args: Any, **kwargs: Any) -> None:
                argv.append(list(command))
                super().__init__(command, *args, **kwargs)

        patch.setattr(subprocess, "run", recorded_run)
        patch.setattr(subprocess, "Popen", RecordedPopen)
        with mock_aws():
            tls = folder / "tls"
            tls.mkdir()
            authority = CertificateAuthority.create("database node test CA")
            issued = authority.issue([PRIMARY_ADDRESS, REPLICA_ADDRESS, RESTORED_ADDRESS])
            ca = authority.write_root(tls / "ca.pem")
            (tls / "server.pem").write_bytes(issued.certificate_pem)
            manager = boto3.client("secretsmanager", region_name=REGION)
            arns = {
                name: manager.create_secret(
                    Name=f"web-infra-test/database/{name}",
                    SecretString=json.dumps(
                        {"username": USERNAMES[name], "password": PASSWORDS[name]}
                    ),
                )["ARN"]
                for name in USERNAMES
            }
            arns["key"] = manager.create_secret(
                Name="web-infra-test/database/tls-key", SecretString=issued.key_pem.decode()
            )["ARN"]
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(
                Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            # Every upload is a version of its own: an object uploaded twice shows.
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            made = Cluster(
                folder,
                systemd,
                ca,
                arns,
                s3,
                make_node(folder, ca, arns, "primary", PRIMARY_ADDRESS, 1),
                make_node(folder, ca, arns, "replica", REPLICA_ADDRESS, 2),
                argv,
            )
            try:
                yield made
            finally:
                for root in list(systemd.daemons):
                    systemd.stop(root)
                if not any(systemd.running(root) for root in systemd.daemons):
                    shutil.rmtree(folder)


def write_messages(node: Node, cluster: Cluster, *texts: str) -> None:
    with node.connect("app", ca=cluster.ca) as connection, connection.cursor() as cursor:
        for text in texts:
            cursor.execute("INSERT INTO messages (text, written_by) VALUES (%s, 'test')", (text,))


def messages(node: Node) -> list[str]:
    return node.sql(f"SELECT id, text FROM {DATABASE}.messages ORDER BY id").splitlines()


def wait_replicated(cluster: Cluster) -> None:
    position = cluster.primary.sql("SELECT @@gtid_binlog_pos")
    applied = cluster.replica.sql(f"SELECT MASTER_GTID_WAIT('{position}', 30)")
    assert applied == "0", f"the replica did not apply {position} in 30 s"


# --- the data volume ---------------------------------------------------------------------------


def test_the_volume_is_formatted_only_when_it_holds_no_filesystem(cluster: Cluster) -> None:
    node = cluster.primary
    config = database_node.Config.load(str(node.config_path))
    device = (node.root / "volume.img").resolve()
    assert database_node.filesystem(device) == {}, "the new volume is blank"
    uuid = database_node.prepare_volume(node.host, config)
    assert database_node.filesystem(device)["TYPE"] == "ext4"
    fstab = (node.root / "etc/fstab").read_text()
    assert f"UUID={uuid} {node.config['mount']} ext4 defaults,nofail,noatime 0 2" in fstab
    assert database_node.prepare_volume(node.host, config) == uuid, "formatted again"
    assert (node.root / "etc/fstab").read_text() == fstab, "one line for the mount"


def test_a_volume_with_another_filesystem_is_left_alone(cluster: Cluster, tmp_path: Path) -> None:
    image = tmp_path / "other.img"
    with image.open("wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-t", "ext2", str(image)], check=True)
    node = cluster.replica
    root = tmp_path / "host"
    link = (
        root
        / "dev/disk/by-id"
        / f"nvme-Amazon_Elastic_Block_Store_{VOLUME['replica'].replace('-', '')}"
    )
    link.parent.mkdir(parents=True)
    link.symlink_to(image)
    config = database_node.Config.load(str(node.config_path))
    with pytest.raises(database_node.Failure, match="holds ext2, not ext4: not touching it"):
        database_node.prepare_volume(database_node.Host(str(root)), config)
    assert database_node.filesystem(image)["TYPE"] == "ext2"


def test_a_missing_volume_fails_in_bounded_time(
    cluster: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(database_node, "VOLUME_WAIT_SECONDS", 1.0)
    config_path = cluster.primary.config_path
    started = time.monotonic()
    code = database_node.main(["--root", str(tmp_path), "--config", str(config_path), "install"])
    assert code == 1
    assert time.monotonic() - started < 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (
        f"database-node: install failed: the data volume {VOLUME['primary']}: still not after 1 s"
    )


# --- the primary --------------------------------------------------------------------------------


def test_the_primary_installs_and_bootstraps_users_that_need_tls(cluster: Cluster) -> None:
    primary = cluster.primary
    assert primary.run("install") == 0
    settings = primary.host.server_config().read_text()
    for line in (
        "server_id = 1",
        "gtid_strict_mode = ON",
        "require_secure_transport = ON",
        f"max_connect_errors = {MAX_CONNECT_ERRORS}",
        f"datadir = {primary.datadir}",
    ):
        assert line in settings
    assert "read_only" not in settings
    # Room for every connection 20 web nodes may open, not MariaDB's default 151.
    assert primary.sql("SELECT @@max_connections") == "250"
    key = Path(primary.config["tls"]["key_file"])
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.stat().st_uid == _mysql_ids()[0]
    units = {p.name for p in (primary.root / "etc/systemd/system").iterdir()}
    assert units == {
        "database-backup.service", "database-backup.timer",
        "database-binlogs.service", "database-binlogs.timer",
        "database-replication-report.service", "database-replication-report.timer",
    }  # fmt: skip
    # The primary has no replication to report: its timer is not started there.
    assert (
        primary.root,
        ("enable", "--now", "database-backup.timer", "database-binlogs.timer"),
    ) in cluster.systemd.calls

    assert primary.run("bootstrap") == 0
    assert len(cluster.objects("full")) == 1, "the first bootstrap took the first full backup"
    for name in ("admin", "replication", "app"):
        with primary.connect(name, ca=cluster.ca) as connection, connection.cursor() as cursor:
            cursor.execute("SHOW STATUS LIKE 'Ssl_version'")
            assert cursor.fetchone()[1].startswith("TLS")
        with pytest.raises(pymysql.err.OperationalError) as refused:
            primary.connect(name, tls=False)
        assert refused.value.args[0] in (1045, 3159), refused.value
    ssl_types = primary.sql(
        "SELECT User, ssl_type FROM mysql.user WHERE User IN ('webinfra_admin', 'replication', "
        "'webapp_app') ORDER BY User"
    ).splitlines()
    assert ssl_types == ["replication\tANY", "webapp_app\tANY", "webinfra_admin\tANY"]
    grants = primary.sql("SHOW GRANTS FOR 'webapp_app'@'%'")
    assert "GRANT SELECT, INSERT ON `webapp`.`messages`" in grants
    assert "GRANT SELECT, UPDATE ON `webapp`.`heartbeat`" in grants


def test_the_app_user_can_do_what_the_app_does_and_no_more(cluster: Cluster) -> None:
    write_messages(cluster.primary, cluster, "first", "second")
    with cluster.primary.connect("app", ca=cluster.ca) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE heartbeat SET ts = UTC_TIMESTAMP(6) WHERE id = 1")
        for forbidden in ("DELETE FROM messages", "DROP TABLE heartbeat", "CREATE TABLE x (a INT)"):
            with pytest.raises(pymysql.err.OperationalError):
                cursor.execute(forbidden)


def test_a_second_install_and_bootstrap_of_the_primary_change_nothing(cluster: Cluster) -> None:
    primary = cluster.primary
    restarts = cluster.systemd.restarts(primary.root)
    users = primary.sql(
        "SELECT User, Host, authentication_string, ssl_type FROM mysql.user ORDER BY User"
    )
    position = primary.sql("SELECT @@gtid_binlog_pos")
    rows = messages(primary)
    assert primary.run("install") == 0
    assert cluster.systemd.restarts(primary.root) == restarts, "restarted with the same settings"
    assert primary.run("bootstrap") == 0
    assert (
        primary.sql(
            "SELECT User, Host, authentication_string, ssl_type FROM mysql.user ORDER BY User"
        )
        == users
    )
    assert primary.sql("SELECT @@gtid_binlog_pos") == position, "the second bootstrap wrote"
    assert messages(primary) == rows
    assert len(cluster.objects("full")) == 1, "a backup exists: no new one"


def test_the_replica_reaches_the_primary_only_over_tls_it_verifies(
    cluster: Cluster, tmp_path: Path
) -> None:
    config = database_node.Config.load(str(cluster.replica.config_path))
    login = database_node.Login(USERNAMES["replication"], PASSWORDS["replication"])
    assert database_node.remote_answers(config, login)
    other = CertificateAuthority.create("another CA").write_root(tmp_path / "other-ca.pem")
    elsewhere = dataclasses.replace(config, tls={**config.tls, "ca_file": str(other)})
    assert not database_node.remote_answers(elsewhere, login), "a server the CA did not sign"
    wrong = database_node.Login(login.username, login.password + "x")
    assert not database_node.remote_answers(config, wrong)


def test_a_secret_that_cannot_be_read_fails_in_bounded_time_without_its_value(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_node, "SECRET_WAIT_SECONDS", 0.5)
    config = database_node.Config.load(str(cluster.primary.config_path))
    missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:nothing-here"
    started = time.monotonic()
    with pytest.raises(database_node.Failure) as failed:
        database_node.secret(config, missing)
    assert time.monotonic() - started < 10
    assert str(failed.value) == f"reading the secret {missing} failed: ResourceNotFoundException"


def test_the_schema_and_rights_are_the_ones_the_program_gives_on_rds() -> None:
    assert database_node.SCHEMA == app_db_user.SCHEMA
    assert database_node.GRANTS == app_db_user.GRANTS
    assert database_node.MAX_CONNECT_ERRORS == MAX_CONNECT_ERRORS


def test_backup_uploads_one_full_backup(cluster: Cluster) -> None:
    """A full backup, taken in a binary log of its own (the replica's test purges those
    before it)."""
    cluster.primary.sql("FLUSH BINARY LOGS")
    before = cluster.objects("full")
    time.sleep(1.1)  # backups are named by the second
    assert cluster.primary.run("backup") == 0
    after = cluster.objects("full")
    assert len(after) == len(before) + 1
    assert set(before) < set(after)
    assert all(k.startswith("database/full/") and k.endswith(".xbstream") for k in after)
    (new,) = set(after) - set(before)
    etag = cluster.s3.head_object(Bucket=BUCKET, Key=new)["ETag"]
    assert "-" in etag, "uploaded in parts (a multipart upload's ETag ends in -<parts>)"


def test_a_failed_backup_leaves_no_object(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = cluster.objects("full")
    time.sleep(1.1)
    # A socket nobody listens on: mariadb-backup cannot connect and fails.
    monkeypatch.setattr(database_node, "SOCKET", "/nonexistent/mysqld.sock")
    assert cluster.primary.run("backup") == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("database-node: backup failed: mariadb-backup failed: ")
    )
    assert cluster.objects("full") == before


def test_a_step_given_up_half_way_leaves_no_child_and_fails_in_one_line() -> None:
    """Backup and restore both run their child in `child_process`: an upload or download that
    breaks off kills it and ends in the step's one line; a `Failure` keeps its own."""
    children: list[subprocess.Popen[bytes]] = []

    def break_off(error: Exception) -> None:
        with database_node.child_process(["sleep", "60"], "uploading x") as (process, _):
            children.append(process)
            raise error

    with pytest.raises(database_node.Failure, match=r"^uploading x failed: the network went$"):
        break_off(OSError("the network went"))
    with pytest.raises(database_node.Failure, match=r"^took too long$"):
        break_off(database_node.Failure("took too long"))
    assert [child.poll() for child in children] == [-9, -9]


# --- the replica ---------------------------------------------------------------------------------


def test_a_replica_booted_later_is_seeded_from_the_bucket_and_replicates(cluster: Cluster) -> None:
    """The rows and users written before the last backup are in the primary's binary logs no
    more: the replica has them only if it was seeded from the backup. The row written after
    it comes from the primary's binary log, from the backup's GTID position on."""
    primary = cluster.primary
    open_at_backup = primary.sql("SHOW BINARY LOGS").splitlines()[-1].split("\t")[0]
    primary.sql(f"PURGE BINARY LOGS TO '{open_at_backup}'")
    assert primary.sql("SHOW BINARY LOGS").splitlines()[0].startswith(open_at_backup)
    write_messages(primary, cluster, "after the backup: from the binary log")
    replica = cluster.replica
    assert replica.run("install") == 0
    assert "read_only = ON" in replica.host.server_config().read_text()
    assert (
        replica.root,
        (
            "enable", "--now", "database-backup.timer", "database-binlogs.timer",
            "database-replication-report.timer",
        ),
    ) in cluster.systemd.calls  # fmt: skip
    assert replica.run("bootstrap") == 0
    status = database_node.slave_status(replica.host)
    assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes"
    assert status["Master_Host"] == PRIMARY_ADDRESS
    assert status["Using_Gtid"] == "Slave_Pos"
    assert status["Master_SSL_Allowed"] == "Yes"
    assert status["Master_SSL_Verify_Server_Cert"] == "Yes"
    wait_replicated(cluster)
    assert messages(replica) == messages(cluster.primary)
    assert len(messages(replica)) == 3
    write_messages(cluster.primary, cluster, "after the replica started")
    wait_replicated(cluster)
    assert messages(replica) == messages(cluster.primary)
    with (
        replica.connect("app", ca=cluster.ca) as connection,
        connection.cursor() as cursor,
        pytest.raises(pymysql.err.OperationalError),  # read-only
    ):
        cursor.execute("INSERT INTO messages (text, written_by) VALUES ('x', 'test')")


def test_a_second_bootstrap_of_a_replicating_replica_changes_nothing(cluster: Cluster) -> None:
    replica = cluster.replica
    marker = replica.datadir / "seeded-once"
    marker.write_text("not re-seeded\n")
    status = database_node.slave_status(replica.host)
    restarts = cluster.systemd.restarts(replica.root)
    assert replica.run("install") == 0
    assert replica.run("bootstrap") == 0
    assert marker.exists(), "the datadir was replaced"
    assert cluster.systemd.restarts(replica.root) == restarts
    again = database_node.slave_status(replica.host)
    for field_name in (
        "Master_Host",
        "Master_User",
        "Gtid_IO_Pos",
        "Slave_IO_Running",
        "Slave_SQL_Running",
    ):
        assert again[field_name] == status[field_name], field_name


def test_check_passes_while_replicating_and_fails_when_replication_stops(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.primary.run("check") == 0
    assert cluster.replica.run("check") == 0
    cluster.replica.sql("STOP SLAVE")
    try:
        assert cluster.replica.run("check") == 1
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(
            "database-node: check failed: replication is not running (IO: No, SQL: No)"
        )
    finally:
        cluster.replica.sql("START SLAVE")
    database_node.wait_for("replication again", lambda: cluster.replica.run("check") == 0, 30)


def reported(name: str, node: str = "database-2") -> list[float]:
    """Every value the replica published for metric `name` (moto's CloudWatch), oldest first."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    now = datetime.datetime.now(datetime.UTC)
    found = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "reported",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [{"Name": "Node", "Value": node}],
                    },
                    "Period": 1,
                    "Stat": "SampleCount",
                },
            },
            {
                "Id": "values",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [{"Name": "Node", "Value": node}],
                    },
                    "Period": 1,
                    "Stat": "Minimum",
                },
            },
        ],
        StartTime=now - datetime.timedelta(hours=1),
        EndTime=now + datetime.timedelta(minutes=1),
        ScanBy="TimestampAscending",
    )["MetricDataResults"]
    counts, values = (result["Values"] for result in found)
    assert all(count == 1 for count in counts), "one report a second at most, here"
    return list(values)


def test_a_running_replica_reports_replication_running_and_no_lag(cluster: Cluster) -> None:
    wait_replicated(cluster)
    running, lag = reported("ReplicationRunning"), reported("ReplicationLagSeconds")
    assert cluster.replica.run("replication-report") == 0
    assert reported("ReplicationRunning") == [*running, 1.0]
    assert reported("ReplicationLagSeconds") == [*lag, 0.0]
    # The primary has no replication: it reports nothing, under its name or the replica's.
    time.sleep(1.1)
    assert cluster.primary.run("replication-report") == 0
    assert reported("ReplicationRunning") == [*running, 1.0]
    assert reported("ReplicationRunning", "database-1") == []


def test_a_stopped_replication_reports_not_running_and_no_lag(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """MariaDB has no lag while the replication threads are stopped: only the stopped state is
    reported (the lag alarm then sees no data; the stopped alarm fires)."""
    time.sleep(1.1)  # one report a second: each its own data point
    running, lag = reported("ReplicationRunning"), reported("ReplicationLagSeconds")
    cluster.replica.sql("STOP SLAVE")
    try:
        assert cluster.replica.run("replication-report") == 0
        assert reported("ReplicationRunning") == [*running, 0.0]
        assert reported("ReplicationLagSeconds") == lag
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            "database-node: reported: replication not running, lag unknown"
        )
        # Only the SQL thread stopped (an error would stop it so): still not running.
        cluster.replica.sql("START SLAVE IO_THREAD")
        time.sleep(1.1)
        assert cluster.replica.run("replication-report") == 0
        assert reported("ReplicationRunning") == [*running, 0.0, 0.0]
    finally:
        cluster.replica.sql("START SLAVE")
    database_node.wait_for("replication again", lambda: cluster.replica.run("check") == 0, 30)


def test_a_replica_whose_mariadb_does_not_answer_reports_nothing(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No report is no data, which the stopped alarm treats as breaching."""
    time.sleep(1.1)
    running = reported("ReplicationRunning")
    config = tmp_path / "database.json"
    config.write_text(json.dumps(cluster.replica.config))
    assert database_node.main(["--root", str(tmp_path), "--config", str(config),
                               "replication-report"]) == 1  # fmt: skip
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("database-node: replication-report failed: MariaDB refused:")
    assert reported("ReplicationRunning") == running


def test_a_report_without_a_namespace_fails_with_one_line(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "database.json"
    config.write_text(json.dumps({**cluster.replica.config, "metrics": {}}))
    code = database_node.main(
        ["--root", str(cluster.replica.root), "--config", str(config), "replication-report"]
    )
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "database-node: replication-report failed: the config names no metrics namespace "
        "(metrics.namespace)"
    )


def test_the_reports_are_the_metrics_the_catalogue_watches() -> None:
    """The script runs on the host without this project: the catalogue and the script name the
    metrics, their dimension and their units alike."""
    by_key = {m.key: m for m in METRICS}
    running, lag = by_key["replication-running"], by_key["replication-lag"]
    assert (running.name, running.unit) == (database_node.RUNNING_METRIC, "None")
    assert (lag.name, lag.unit) == (database_node.LAG_METRIC, "Seconds")
    for metric in (running, lag):
        assert metric.dimensions == ((database_node.NODE_DIMENSION, "{db_host}"),)


def test_a_rotated_replication_password_reaches_the_replica_by_bootstrap(
    cluster: Cluster,
) -> None:
    """A new password in the secret: the primary's bootstrap sets it; the replica, refused at
    its next connection, takes it from the secret at its next bootstrap."""
    new = secrets.token_urlsafe(12) + "'\\n"
    PASSWORDS["rotated replication"] = new
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=cluster.secret_arns["replication"],
        SecretString=json.dumps({"username": USERNAMES["replication"], "password": new}),
    )
    assert cluster.primary.run("bootstrap") == 0
    replica = cluster.replica
    replica.sql("STOP SLAVE; START SLAVE")
    database_node.wait_for(
        "the primary refusing the old password",
        lambda: database_node.slave_status(replica.host).get("Last_IO_Errno") == "1045",
        30,
    )
    assert replica.run("check") == 1
    assert replica.run("bootstrap") == 0
    assert replica.run("check") == 0
    write_messages(cluster.primary, cluster, "after the rotation")
    wait_replicated(cluster)
    assert messages(replica) == messages(cluster.primary)


def test_backup_and_ship_binlogs_do_nothing_on_the_replica(cluster: Cluster) -> None:
    before = cluster.objects("full"), cluster.objects("binlog")
    assert cluster.replica.run("backup") == 0
    assert cluster.replica.run("ship-binlogs") == 0
    assert (cluster.objects("full"), cluster.objects("binlog")) == before


# --- binary logs and restore ---------------------------------------------------------------------


def test_ship_binlogs_uploads_each_closed_binary_log_once(cluster: Cluster) -> None:
    primary = cluster.primary
    assert primary.run("ship-binlogs") == 0
    logs = [line.split("\t")[0] for line in primary.sql("SHOW BINARY LOGS").splitlines()]
    shipped = cluster.objects("binlog")
    assert shipped == [f"database/binlog/database-1/{name}" for name in logs[:-1]]
    assert shipped, "the log closed by the rotation"
    assert primary.run("ship-binlogs") == 0
    assert cluster.objects("binlog") == shipped, "nothing new written: nothing shipped"
    write_messages(primary, cluster, "shipped in the next log")
    assert primary.run("ship-binlogs") == 0
    again = cluster.objects("binlog")
    assert len(again) == len(shipped) + 1
    assert set(shipped) < set(again)


def test_restore_into_a_fresh_datadir_gives_the_same_rows(cluster: Cluster) -> None:
    """The latest full backup restored and started gives the rows it holds; the binary logs
    the primary shipped since, replayed from the backup's GTID position, give the rows written
    after it. Run with the replica's config: a restore may run on either host."""
    primary = cluster.primary
    write_messages(primary, cluster, "the last row before the backup")
    time.sleep(1.1)
    assert primary.run("backup") == 0
    at_backup = messages(primary)
    write_messages(primary, cluster, "after the backup, in a shipped binary log")
    assert primary.run("ship-binlogs") == 0
    folder = cluster.folder / "restored"
    target, binlogs = folder / "mysql", folder / "binlogs"
    restore = ["restore", "--to", str(target), "--binlogs", str(binlogs)]
    assert database_node.main(["--config", str(cluster.replica.config_path), *restore]) == 0
    database_node.chown_tree(folder)
    socket = folder / "mysqld.sock"
    log = (folder / "mariadbd.log").open("ab")
    daemon = subprocess.Popen(
        [
            processes.program("mariadbd"),
            "--no-defaults",
            f"--datadir={target}",
            f"--socket={socket}",
            f"--bind-address={RESTORED_ADDRESS}",
            f"--port={PORT}",
            f"--user={database_node.MYSQL_USER}",
            f"--tmpdir={folder}",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    (folder / "mariadbd.pid").write_text(f"{daemon.pid}\n")
    client = [processes.program("mariadb"), f"--socket={socket}", "--batch", "--skip-column-names"]
    try:

        def rows() -> list[str] | None:
            result = subprocess.run(
                client,
                input=f"SELECT id, text FROM {DATABASE}.messages ORDER BY id",
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            return result.stdout.strip().splitlines() if result.returncode == 0 else None

        assert database_node.wait_for("the restored server", rows, 60) == at_backup
        position = database_node.binlog_position(target)
        names = sorted(p.name for p in binlogs.iterdir())
        assert names, "the binary log holding the later row came too"
        replay = subprocess.run(
            [processes.program("mariadb-binlog"), f"--start-position={position}", *names],
            cwd=binlogs,
            capture_output=True,
            check=True,
            timeout=60,
        )
        subprocess.run(client, input=replay.stdout, capture_output=True, check=True, timeout=60)
        assert rows() == messages(primary)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def test_restore_refuses_a_folder_in_use_and_a_time_before_every_backup(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(cluster.primary.config_path)
    assert (
        database_node.main(["--config", config, "restore", "--to", str(cluster.primary.datadir)])
        == 1
    )
    assert "is not empty: restore into a new folder" in capsys.readouterr().err
    target = cluster.folder / "too-early"
    assert (
        database_node.main(
            ["--config", config, "restore", "--to", str(target), "--at", "2000-01-01T00:00:00Z"]
        )
        == 1
    )
    assert "no full backup in s3://" in capsys.readouterr().err
    assert not target.exists()


def test_no_password_or_key_in_a_command_line_or_the_output(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.argv, "the commands were recorded"
    key = cluster.replica.config["tls"]["key_file"]
    private = Path(key).read_text()
    for command in cluster.argv:
        text = " ".join(command)
        for password in PASSWORDS.values():
            assert password not in text
        assert "PRIVATE KEY" not in text
    output = capsys.readouterr()
    for password in PASSWORDS.values():
        assert password not in output.out + output.err
    assert private not in output.out + output.err
