"""`dbMode: ec2` booted: database-1 and database-2 from their real cloud-configs.

The boot lab (`up(db_mode="ec2")`, lab/boot/database_hosts.py) makes what the program makes
before the hosts boot (the users' secrets and the hosts' TLS keys in the secret store's moto,
the stack's database CA and each host's certificate, the backup bucket) and gives each host a
data volume (a loop device as `/dev/xvdf`). Nothing then touches MariaDB but the hosts' own
`database_node.py`: the primary creates the users and takes the first backup, the replica
waits for it, seeds itself from that backup and replicates over verified TLS; the web nodes
verify both with the stack's CA. Then: a write through the load balancer is read back from
the replica; the primary's host replaced under a stream of writes (the same volume attached to
the new instance) loses no acknowledged write; the backup units, run as their timers run them,
fill the bucket from the primary only; the replica's host killed, the reads come from the
primary.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from boot_support import database_lab, mariadb, require_boot_capabilities

from lab import checks
from lab.boot import standins
from lab.boot.bootlab import BootLab
from tools.verify import HttpFailure, http_request
from userdata.database_host import CONFIG_FILE, DATABASE_NODE, MOUNT
from userdata.scripts.database_node import (
    BACKUP_UNIT,
    BINLOG_UNIT,
    NODE_DIMENSION,
    REPORT_UNIT,
    RUNNING_METRIC,
)

HOSTS = ("database-1", "database-2")
ZONE = "dev.web-infra.internal"
ROOT = Path(__file__).resolve().parent.parent
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[BootLab]:
    require_boot_capabilities()
    with database_lab("ec2", MEASURED) as booted:
        yield booted


def test_status_lists_both_database_hosts_booted_without_an_error(lab: BootLab) -> None:
    status = lab.status()
    assert status["db_mode"] == "ec2"
    hosts = {h["name"]: h for h in status["hosts"]}
    assert "db-primary" not in hosts, "no RDS stand-in in this mode"
    for name in HOSTS:
        host = hosts[name]
        assert host["role"] == "database"
        assert host["state"] == "up", host
        assert host["cloud_init"]["errors"] == [], host["cloud_init"]
        assert host["services"]["mariadb.service"] == "enabled/active"
        MEASURED[f"{name} booted"] = host["booted_seconds"]
    assert status["replication"].startswith("replicating"), status["replication"]


@pytest.mark.parametrize("host", HOSTS)
def test_the_datadir_is_on_the_host_s_own_volume(lab: BootLab, host: str) -> None:
    container = lab.container(lab.load().host(host))
    found = container.execute("findmnt", "--json", "--output", "SOURCE,FSTYPE", MOUNT)
    assert found.returncode == 0, f"{MOUNT} is not mounted: {found.stderr}"
    (mount,) = json.loads(found.stdout)["filesystems"]
    assert mount["fstype"] == "ext4"
    assert mount["source"].startswith("/dev/"), mount
    datadir = mariadb(lab, host, "SELECT @@datadir").split()[-1]
    assert datadir.rstrip("/") == f"{MOUNT}/mysql"


def test_replication_came_up_by_itself_over_verified_tls(lab: BootLab) -> None:
    status = mariadb(lab, "database-2", "SHOW SLAVE STATUS\\G")
    fields = dict(
        line.strip().split(": ", 1) for line in status.splitlines() if ": " in line.strip()
    )
    assert fields["Master_Host"] == f"database-1.{ZONE}"
    assert fields["Slave_IO_Running"] == "Yes"
    assert fields["Slave_SQL_Running"] == "Yes"
    assert fields["Master_SSL_Allowed"] == "Yes"
    assert fields["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert fields["Using_Gtid"] == "Slave_Pos"
    assert mariadb(lab, "database-2", "SELECT @@read_only").split()[-1] == "1"
    # The replica was seeded from the primary's first backup in the bucket.
    container = lab.container(lab.load().host("database-2"))
    checked = container.execute("python3", DATABASE_NODE, "check", "--config", CONFIG_FILE)
    assert checked.returncode == 0, checked.stderr
    output = container.execute("cat", "/var/log/cloud-init-output.log").stdout
    assert "seeded from database/full/" in output, output[-2000:]


def test_the_replica_reports_its_replication_to_cloudwatch(lab: BootLab) -> None:
    """The replica's timer runs `replication-report` with the host's own role: CloudWatch's
    stand-in has `ReplicationRunning` 1 for database-2 in the stack's namespace, and the
    primary, which has no replication, reports nothing."""
    replica = lab.container(lab.load().host("database-2"))
    timer = replica.execute("systemctl", "is-active", f"{REPORT_UNIT}.timer").stdout.strip()
    assert timer == "active"
    ran = replica.execute("systemctl", "start", f"{REPORT_UNIT}.service", timeout=120)
    assert ran.returncode == 0, ran.stderr
    cloudwatch = standins.aws_client("cloudwatch", lab.load().region, lab.authority)
    found = {
        (metric["Namespace"], dimension["Value"])
        for metric in cloudwatch.list_metrics(MetricName=RUNNING_METRIC)["Metrics"]
        for dimension in metric["Dimensions"]
        if dimension["Name"] == NODE_DIMENSION
    }
    assert [node for _, node in found] == ["database-2"], found
    ((namespace, _),) = found
    now = datetime.datetime.now(datetime.UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=RUNNING_METRIC,
        Dimensions=[{"Name": NODE_DIMENSION, "Value": "database-2"}],
        StartTime=now - datetime.timedelta(minutes=30),
        EndTime=now + datetime.timedelta(minutes=1),
        Period=60,
        Statistics=["Minimum"],
    )["Datapoints"]
    assert points, "no ReplicationRunning data point"
    assert min(point["Minimum"] for point in points) == 1


def test_a_write_through_the_load_balancer_is_read_back_from_the_replica(lab: BootLab) -> None:
    # The web nodes came up with the databases still booting: their reads may need a moment.
    deadline = time.monotonic() + 60
    while True:
        result = checks.check_read_back_from_replica(lab.url())
        if result.ok or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert result.ok, result.found


def write_stream(url: str, stop: threading.Event, answers: list[tuple[float, str, int]]) -> None:
    """Keyed writes one after the other until `stop`: (time, text, status; 0 = no answer)."""
    for number in itertools.count():
        if stop.is_set():
            return
        text = f"replaced-primary {number}"
        try:
            posted = http_request(
                "POST", f"{url.rstrip('/')}/api/messages", timeout=3, payload={"text": text}
            )
            status = posted.status
        except HttpFailure:
            status = 0
        answers.append((time.monotonic(), text, status))
        if status != 201:
            time.sleep(0.2)


def texts(lab: BootLab, host: str, like: str) -> list[str]:
    query = f"SELECT text FROM webapp.messages WHERE text LIKE '{like}%'"
    return mariadb(lab, host, query).splitlines()[1:]


def test_the_primary_replaced_under_writes_loses_no_acknowledged_write(lab: BootLab) -> None:
    """`replace database-1` as `pulumi up` does after a change: the instance stopped cleanly,
    a new one from the same userdata attaching the same volume. Writes fail while it is away
    and succeed after; every acknowledged write is there once, on both hosts."""
    stop, answers = threading.Event(), list[tuple[float, str, int]]()
    writer = threading.Thread(target=write_stream, args=(lab.url(), stop, answers), daemon=True)
    writer.start()
    time.sleep(5)
    seconds = lab.replace("database-1")
    MEASURED["database-1 replaced (stop to booted)"] = seconds
    time.sleep(5)
    stop.set()
    writer.join(30)
    acknowledged = [text for _, text, status in answers if status == 201]
    failed = [(at, status) for at, _, status in answers if status != 201]
    assert acknowledged[:5], "no write succeeded before the replacement"
    assert failed, "no write failed: was the primary replaced at all?"
    assert answers[-1][2] == 201, "writes did not come back after the replacement"
    MEASURED["writes failing while the primary was away"] = failed[-1][0] - failed[0][0]
    print(f"\n{len(acknowledged)} writes acknowledged, {len(failed)} refused or unanswered")
    on_primary = texts(lab, "database-1", "replaced-primary ")
    assert sorted(set(acknowledged) - set(on_primary)) == [], "acknowledged writes lost"
    assert len(on_primary) == len(set(on_primary)), "a write stored twice"
    # The replica reconnects by itself and has them too.
    deadline = time.monotonic() + 60
    while set(acknowledged) - set(texts(lab, "database-2", "replaced-primary ")):
        assert time.monotonic() < deadline, "the replica did not catch up with the new primary"
        time.sleep(1)
    assert lab.status()["replication"].startswith("replicating")
    container = lab.container(lab.load().host("database-1"))
    output = container.execute("cat", "/var/log/cloud-init-output.log").stdout
    assert "holds no filesystem" not in output, "the replacement formatted the data volume"


def test_the_replica_replaced_keeps_its_volume_and_catches_up(lab: BootLab) -> None:
    """`replace database-2` under writes: reads come from the primary while it is away, and
    the new instance, on the same volume, resumes replicating where the old one stopped and
    has every acknowledged write."""
    stop, answers = threading.Event(), list[tuple[float, str, int]]()
    writer = threading.Thread(target=write_stream, args=(lab.url(), stop, answers), daemon=True)
    writer.start()
    time.sleep(3)
    MEASURED["database-2 replaced (stop to booted)"] = lab.replace("database-2")
    time.sleep(3)
    stop.set()
    writer.join(30)
    acknowledged = {text for _, text, status in answers if status == 201}
    assert len(acknowledged) > 10, "writes did not go on while the replica was replaced"
    deadline = time.monotonic() + 60
    while missing := acknowledged - set(texts(lab, "database-2", "replaced-primary ")):
        assert time.monotonic() < deadline, f"the new replica lacks {sorted(missing)[:5]}"
        time.sleep(1)
    assert lab.status()["replication"].startswith("replicating")
    container = lab.container(lab.load().host("database-2"))
    output = container.execute("cat", "/var/log/cloud-init-output.log").stdout
    assert "holds no filesystem" not in output, "the replacement formatted the data volume"
    assert "seeded from" not in output, "the replacement seeded itself again instead of resuming"


def bucket_keys(lab: BootLab, folder: str) -> set[str]:
    """The backup bucket's keys under `database/<folder>/`."""
    state = lab.load()
    s3 = standins.aws_client("s3", state.region, lab.authority)
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("-backups")]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"database/{folder}/"
    )
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_the_backup_timers_services_run_as_systemd_runs_them(lab: BootLab) -> None:
    """The later runs of the backups, as their timers start them (the units' own command,
    user and environment, not the test's): on the primary, a full backup and the binary logs
    since land in the bucket; on the replica, both do nothing, by design."""
    primary = lab.container(lab.load().host("database-1"))
    replica = lab.container(lab.load().host("database-2"))
    for container in (primary, replica):
        timers = [f"{BACKUP_UNIT}.timer", f"{BINLOG_UNIT}.timer"]
        active = container.execute("systemctl", "is-active", *timers).stdout.split()
        assert active == ["active", "active"], (container.name, active)
    full, binlogs = bucket_keys(lab, "full"), bucket_keys(lab, "binlog")
    posted = http_request(
        "POST", f"{lab.url().rstrip('/')}/api/messages", timeout=5, payload={"text": "timers"}
    )
    assert posted.status == 201
    for container in (replica, primary):
        for unit in (BACKUP_UNIT, BINLOG_UNIT):
            started = time.monotonic()
            ran = container.execute("systemctl", "start", f"{unit}.service", timeout=600)
            assert ran.returncode == 0, (container.name, unit, ran.stderr)
            MEASURED[f"{unit}.service on {container.name}"] = time.monotonic() - started
        if container is replica:
            assert (bucket_keys(lab, "full"), bucket_keys(lab, "binlog")) == (full, binlogs)
    assert len(bucket_keys(lab, "full") - full) >= 1, "no new full backup"
    assert bucket_keys(lab, "binlog") - binlogs, "no binary log shipped"


RESTORE_BLOCK = re.compile(
    r"<!-- database-restore: on a database host, as root -->\n```bash\n(.*?)```", re.S
)


def test_the_readme_s_restore_gives_the_primary_s_rows(lab: BootLab) -> None:
    """The README's restore, run as written on the replica's host once the primary has shipped
    its binary logs: the latest full backup plus the logs since give the primary's table."""
    (script,) = RESTORE_BLOCK.findall((ROOT / "README.md").read_text())
    primary = lab.container(lab.load().host("database-1"))
    shipped = primary.execute(
        "python3", DATABASE_NODE, "ship-binlogs", "--config", CONFIG_FILE, timeout=120
    )
    assert shipped.returncode == 0, shipped.stderr
    expected = mariadb(lab, "database-1", QUERY).splitlines()
    started = time.monotonic()
    replica = lab.container(lab.load().host("database-2"))
    ran = replica.execute("bash", "-euo", "pipefail", "-c", script, timeout=600)
    MEASURED["the README's restore"] = time.monotonic() - started
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    restored = [line for line in ran.stdout.splitlines() if line.strip()]
    # The block prints the count (header, value) and the checksum (header, row).
    assert restored[-4:] == expected, (restored[-4:], expected)
    assert int(expected[1]) > 0, "the primary's table is empty: nothing was compared"


QUERY = "SELECT COUNT(*) FROM webapp.messages; CHECKSUM TABLE webapp.messages"


def read_source(url: str) -> tuple[int, str | None]:
    try:
        page = http_request("GET", f"{url.rstrip('/')}/api/messages?limit=5", timeout=5)
    except HttpFailure:
        return 0, None
    try:
        return page.status, page.json().get("read_from")
    except ValueError:
        return page.status, None


def await_reads_from(url: str, source: str, started: float, timeout: float = 60) -> float:
    """Polls reads through the load balancer until one is served from `source` ("primary" or
    "replica"), at most `timeout` s after `started`; the seconds since `started`."""
    sources = []
    while time.monotonic() < started + timeout:
        sources.append(read_source(url))
        if sources[-1] == (200, source):
            break
        time.sleep(0.5)
    assert sources, f"no read tried within {timeout} s"
    assert sources[-1] == (200, source), sources[-10:]
    return time.monotonic() - started


def test_the_replica_host_killed_reads_come_from_the_primary(lab: BootLab) -> None:
    assert read_source(lab.url()) == (200, "replica")
    started = time.monotonic()
    lab.kill("database-2")
    MEASURED["replica killed to a read from the primary"] = await_reads_from(
        lab.url(), "primary", started
    )
    # And it stays so: every read served, by the primary.
    for _ in range(10):
        assert read_source(lab.url()) == (200, "primary")
    posted = http_request(
        "POST", f"{lab.url().rstrip('/')}/api/messages", timeout=5, payload={"text": "no replica"}
    )
    assert posted.status == 201
