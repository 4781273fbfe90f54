"""`dbMode: colocated` booted: web-1 runs the primary next to its app, web-2 the replica.

The boot lab (`up(db_mode="colocated")`, lab/boot/database_hosts.py) makes what the program
makes before the nodes boot (the users' secrets and the nodes' TLS keys, the stack's database
CA and each node's certificate, the backup bucket, `db-primary` and `db-replica` at web-1's and
web-2's addresses) and gives web-1 and web-2 a data volume each (a loop device as `/dev/xvdf`).
Then web-1 and web-2 boot their own userdata, the web node's with the database's steps: the
primary creates the users and takes the first backup, the replica seeds itself from it and
replicates over verified TLS. Proven here, and no more (the rest is `dbMode: ec2`'s, whose
boot test proves the same script): replication comes up by itself, a write through the load
balancer is read back from the replica, web-1 replaced under a stream of keyed writes
loses no acknowledged write and stores none twice (how long writes stop is measured); web-2
killed, reads come from web-1's primary, and its replacement on the same volume resumes
replicating; every AWS call web-1 and web-2 made is one their roles' rendered policies allow.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from boot_support import database_lab, mariadb, require_boot_capabilities
from iam_support import bind, host_policies, instance_context
from test_boot_database_ec2 import await_reads_from, read_source

from lab import checks
from lab.boot import standins
from lab.boot.bootlab import BootLab
from lab.boot.calls import classify_all
from lab.boot.policy import Decision, Request, evaluate
from lab.boot.standins import MOTO_ACCOUNT
from tools.mocked_program import run_program

NODES = ("web-1", "web-2")
ZONE = "dev.web-infra.internal"
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[BootLab]:
    require_boot_capabilities()
    with database_lab("colocated", MEASURED) as up:
        yield up


def test_status_shows_the_database_on_web_1_and_web_2(lab: BootLab) -> None:
    status = lab.status()
    assert status["db_mode"] == "colocated"
    hosts = {h["name"]: h for h in status["hosts"]}
    assert not [h for h in hosts.values() if h["role"] == "database"], "no database host"
    assert "db-primary" not in hosts, "no RDS stand-in in this mode"
    for name, role in (("web-1", "primary"), ("web-2", "replica")):
        host = hosts[name]
        assert (host["role"], host["database"], host["state"]) == ("web", role, "up"), host
        assert host["cloud_init"]["errors"] == [], host["cloud_init"]
        assert host["services"]["mariadb.service"] == "enabled/active"
        assert host["services"]["web-app.service"] == "enabled/active"
        MEASURED[f"{name} booted"] = host["booted_seconds"]
    assert status["replication"].startswith("replicating"), status["replication"]


def test_replication_came_up_by_itself_over_verified_tls(lab: BootLab) -> None:
    status = mariadb(lab, "web-2", "SHOW SLAVE STATUS\\G")
    fields = dict(
        line.strip().split(": ", 1) for line in status.splitlines() if ": " in line.strip()
    )
    assert fields["Master_Host"] == f"db-primary.{ZONE}"
    assert (fields["Slave_IO_Running"], fields["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert fields["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert fields["Using_Gtid"] == "Slave_Pos"
    assert mariadb(lab, "web-2", "SELECT @@read_only").split()[-1] == "1"
    assert mariadb(lab, "web-1", "SELECT @@read_only").split()[-1] == "0"


def test_a_write_through_the_load_balancer_is_read_back_from_the_replica(lab: BootLab) -> None:
    deadline = time.monotonic() + 60
    while True:
        result = checks.check_read_back_from_replica(lab.url())
        if result.ok or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert result.ok, result.found


@dataclass
class Attempt:
    at: float
    key: int
    status: int
    """The HTTP status; 0: no answer."""


def post(url: str, key: int) -> int:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/messages",
        data=json.dumps({"text": f"colocated {key}"}).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": f"colocated-{key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, TimeoutError):
        return 0


def keyed_writes(url: str, stop: threading.Event, attempts: list[Attempt]) -> None:
    """Writes one after the other, each key retried until it is acknowledged (a client that
    keeps its Idempotency-Key); returns at `stop`, once the key in hand is acknowledged."""
    for key in itertools.count():
        while True:
            status = post(url, key)
            attempts.append(Attempt(time.monotonic(), key, status))
            if status == 201:
                break
            time.sleep(0.2)
        if stop.is_set():
            return


def texts(lab: BootLab, host: str) -> list[str]:
    query = "SELECT text FROM webapp.messages WHERE text LIKE 'colocated %'"
    return mariadb(lab, host, query).splitlines()[1:]


def test_web_1_replaced_under_keyed_writes_loses_none_and_stores_none_twice(
    lab: BootLab,
) -> None:
    """`replace web-1` as `pulumi up` does after a change: its instance stopped cleanly, a new
    one from the same userdata attaching the same volume. Writes stop while web-1's database
    is away (HAProxy sends requests to web-2 meanwhile, whose app answers 503); each key is
    retried until acknowledged, and every acknowledged one is there once, on both nodes."""
    stop, attempts = threading.Event(), list[Attempt]()
    writer = threading.Thread(target=keyed_writes, args=(lab.url(), stop, attempts), daemon=True)
    writer.start()
    time.sleep(5)
    replaced_at = time.monotonic()
    MEASURED["web-1 replaced (stop to booted)"] = lab.replace("web-1")
    stop.set()
    writer.join(120)
    assert not writer.is_alive(), "writes did not come back after web-1's replacement"
    acknowledged = {a.key for a in attempts if a.status == 201}
    failed = [a for a in attempts if a.status != 201]
    assert failed, "no write failed: was web-1 replaced at all?"
    assert attempts[-1].status == 201
    first_failure = failed[0].at
    back = min(a.at for a in attempts if a.status == 201 and a.at > failed[-1].at)
    MEASURED["writes stopped for"] = back - first_failure
    MEASURED["first failed write after the replacement began"] = first_failure - replaced_at
    print(
        f"\n{len(acknowledged)} keyed writes acknowledged, {len(failed)} attempts refused or "
        f"unanswered ({sorted({a.status for a in failed})})"
    )
    on_primary = texts(lab, "web-1")
    wanted = {f"colocated {key}" for key in acknowledged}
    assert sorted(wanted - set(on_primary)) == [], "acknowledged writes lost"
    assert len(on_primary) == len(set(on_primary)), "a write stored twice"
    deadline = time.monotonic() + 60
    while wanted - set(texts(lab, "web-2")):
        assert time.monotonic() < deadline, "the replica did not catch up with the new primary"
        time.sleep(1)
    replica = texts(lab, "web-2")
    assert len(replica) == len(set(replica)), "a write stored twice on the replica"
    assert lab.status()["replication"].startswith("replicating")
    container = lab.container(lab.load().host("web-1"))
    output = container.execute("cat", "/var/log/cloud-init-output.log").stdout
    assert "holds no filesystem" not in output, "the replacement formatted the data volume"


def test_web_2_killed_reads_come_from_web_1_and_its_replacement_resumes_replicating(
    lab: BootLab,
) -> None:
    """web-2 dies, its web node and the replica with it: HAProxy takes it out, web-1's app
    reads from the primary, and writes go on. A new instance takes its place (what EC2's
    recovery or `pulumi up` does for a dead instance) on the same volume, left unclean by the
    power-off: it resumes replicating where the dead one stopped, without seeding itself
    again, and has every write; reads come from the replica again."""
    assert read_source(lab.url()) == (200, "replica")
    started = time.monotonic()
    lab.kill("web-2")
    MEASURED["web-2 killed to a read from the primary"] = await_reads_from(
        lab.url(), "primary", started
    )
    assert [read_source(lab.url()) for _ in range(10)] == [(200, "primary")] * 10
    assert [post(lab.url(), key) for key in range(10_000, 10_005)] == [201] * 5
    MEASURED["web-2 replaced after it died (to booted)"] = lab.replace("web-2")
    deadline = time.monotonic() + 60
    while missing := set(texts(lab, "web-1")) - set(texts(lab, "web-2")):
        assert time.monotonic() < deadline, f"the new replica lacks {sorted(missing)[:5]}"
        time.sleep(1)
    assert lab.status()["replication"].startswith("replicating")
    output = lab.container(lab.load().host("web-2")).execute(
        "cat", "/var/log/cloud-init-output.log"
    )
    assert "holds no filesystem" not in output.stdout, "the replacement formatted the volume"
    assert "seeded from" not in output.stdout, "the replacement seeded itself again"
    await_reads_from(lab.url(), "replica", time.monotonic())


# --- IAM: web-1's and web-2's calls, against their roles' rendered policies -------------------
# Last in the module: the calls of the boot, the backups and the replacement are all in.


def test_every_call_web_1_and_web_2_made_is_allowed_by_their_roles_policies(
    lab: BootLab,
) -> None:
    """A web node running the database reads the users' secrets and its own key and writes
    backups besides a web node's calls: the program's policies for web-1 and web-2 (under
    mocks, this stack's config) allow every one of them, by AWS's evaluation rules."""
    state = lab.load()
    run = run_program({"dbMode": "colocated"}, stack=state.stack)
    secrets = standins.aws_client("secretsmanager", state.region, lab.authority)
    in_lab = {s["Name"]: s["ARN"] for s in secrets.list_secrets()["SecretList"]}
    # What AWS names, bound to what the lab's moto named: the secrets' ARNs.
    values = {
        str(secret.outputs["arn"]): in_lab[secret.inputs["name"]]
        for secret in run.of_type("aws:secretsmanager/secret:Secret")
        if secret.inputs["name"] in in_lab
    }
    policies = host_policies(run, state.stack)
    calls = [
        call
        for entry in lab.recorded_calls()
        if entry["signed"] and entry["host"] in NODES
        for call in classify_all(entry, MOTO_ACCOUNT, in_lab)
    ]
    refused, made = [], set()
    for call in calls:
        host = str(call.host)
        documents = [bind(doc, values) for doc in policies[host].documents.values()]
        context = {
            **instance_context(state.region, MOTO_ACCOUNT, state.host(host).instance_id),
            **call.context,
        }
        decision = evaluate(documents, Request(call.action, call.resource, context))
        if decision is not Decision.ALLOWED:
            refused.append(f"{call}: {decision.value}")
        made.add((host, call.action, call.resource))
    assert not refused, "calls the roles' policies do not allow:\n" + "\n".join(refused)
    for host in NODES:
        key = in_lab[f"{state.settings_object().name_prefix}/{host}/tls-key"]
        assert (host, "secretsmanager:GetSecretValue", key) in made, host
    assert [m for m in made if m[0] == "web-1" and m[1] == "s3:PutObject"], "no backup written"
