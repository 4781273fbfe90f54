"""`dbMode: colocated` under the AWS-like mocks: web-1 runs the primary, web-2 the replica.

The database is `dbMode: ec2`'s (tests/test_database_hosts.py): here, what differs because
its hosts are web nodes. web-1 and web-2 keep a fixed address, a protected data volume and
their database's names before they boot, are deleted before their replacement, web-2 boots
after web-1 serves; their roles are a web node's plus exactly a database host's policy; their
userdata is a web node's plus the database's steps, ready once both serve; 3306 is open
between web nodes; web nodes 3 and up stay plain web nodes.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from cryptography import x509
from iam_support import host_policies
from system_tools import require
from test_database_hosts import allowed, secret_arn, written
from test_iam_policies import cloudsplaining_findings, parliament_findings

from components.rendered_hosts import (
    DatabaseHostResources,
    colocated_web_userdata,
    render_hosts,
)
from settings import load_settings
from settings.colocated_database import fixed_private_ip, reserved_cidr
from tools.mocked_program import ACCOUNT, REGION, ProgramRun, Registration, run_program
from userdata.cloud_config import EC2_USERDATA_LIMIT, REPORT_READY, parse
from userdata.cloudwatch_agent import AGENT_CONFIG_PATH
from userdata.colocated_web_node import with_database
from userdata.database_host import (
    CA_FILE,
    CERT_FILE,
    CONFIG_FILE,
    DATABASE_NODE,
    PACKAGES,
    WEB_CA_FILE,
    DatabaseSecrets,
)
from userdata.scripts import database_node, report_ready
from userdata.shipping import FETCH_ARTIFACT

NODES = ("web-1", "web-2")
ZONE = "dev.web-infra.internal"
VPC = "10.20.0.0/16"
INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
RECORD = "aws:route53/record:Record"
RESERVATION = "aws:ec2/subnetCidrReservation:SubnetCidrReservation"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
APP_CONFIG = "/etc/web-app/config.json"


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(
        {
            "dbMode": "colocated",
            "webNodeCount": 3,
            "dbAllocatedStorageGb": 50,
            "dbBackupRetentionDays": 9,
        }
    )


def node(run: ProgramRun, name: str) -> Registration:
    return run.one(INSTANCE, f"web-infra-dev-web-{name}")


def gate(run: ProgramRun, name: str) -> Registration:
    (found,) = [
        r
        for r in run.registrations
        if r.type.startswith("pulumi-python:dynamic") and r.name == f"web-infra-dev-web-{name}-gate"
    ]
    return found


def userdata_of(run: ProgramRun, name: str) -> dict[str, Any]:
    return parse(node(run, name).inputs["userData"])


# --- no RDS, the same outputs ---------------------------------------------------------------


def test_colocated_mode_makes_no_rds_no_bootstrap_and_no_database_host(run: ProgramRun) -> None:
    made = {r.type for r in run.registrations}
    assert not {t for t in made if t.startswith(("aws:rds/", "aws:lambda/"))}
    assert not [r for r in run.registrations if "database-bootstrap" in r.name]
    assert run.instances("database") == []
    assert len(run.instances("web")) == 3
    assert run.outputs["db_primary_endpoint"] == f"web-1.{ZONE}:3306"
    assert run.outputs["db_replica_endpoint"] == f"web-2.{ZONE}:3306"


def test_the_database_s_names_point_at_web_1_and_web_2_before_they_boot(run: ProgramRun) -> None:
    records = {r.inputs["name"]: r for r in run.of_type(RECORD)}
    for alias, name in (("db-primary", "web-1"), ("db-replica", "web-2")):
        record = records[f"{alias}.{ZONE}"]
        assert record.inputs["type"] == "A"
        assert record.inputs["records"] == [fixed_private_ip(VPC, name)]
        for booting in NODES:
            assert record.urn in node(run, booting).explicit_dependencies, (alias, booting)
    # The nodes' own names still come from their gates: HAProxy sends traffic once one serves.
    assert records[f"web-1.{ZONE}"].inputs["records"] == [fixed_private_ip(VPC, "web-1")]
    assert run.depends_on(records[f"web-1.{ZONE}"], gate(run, "web-1"))


# --- the graph ------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "name"), list(enumerate(NODES)))
def test_the_data_volume_outlives_the_node(run: ProgramRun, index: int, name: str) -> None:
    volume = run.one(VOLUME, f"{name}-data")
    instance = node(run, name)
    assert volume.protect
    assert (volume.inputs["encrypted"], volume.inputs["type"]) == (True, "gp3")
    assert volume.inputs["size"] == 50
    assert volume.inputs["availabilityZone"] == ["eu-west-1a", "eu-west-1b"][index]
    (subnet,) = [
        r for r in run.of_type("aws:ec2/subnet:Subnet") if r.id == instance.inputs["subnetId"]
    ]
    assert subnet.inputs["availabilityZone"] == volume.inputs["availabilityZone"]
    assert volume.dependencies == set(), "no change of the node reaches its data"
    attachment = run.one(ATTACHMENT, f"web-{name}-data-attachment")
    assert attachment.inputs["volumeId"] == volume.id
    assert attachment.inputs["instanceId"] == instance.id
    assert attachment.inputs["deviceName"] == "/dev/sdf"
    assert attachment.inputs["stopInstanceBeforeDetaching"] is True
    config = json.loads(written(userdata_of(run, name), CONFIG_FILE))
    assert config["volume_id"] == volume.id


@pytest.mark.parametrize("name", NODES)
def test_the_address_is_fixed_reserved_and_held_by_one_instance_at_a_time(
    run: ProgramRun, name: str
) -> None:
    instance = node(run, name)
    assert instance.inputs["privateIp"] == fixed_private_ip(VPC, name)
    assert instance.delete_before_replace
    reservation = run.one(RESERVATION, f"colocated-database-{name}-address")
    assert reservation.inputs["reservationType"] == "explicit"
    assert reservation.inputs["cidrBlock"] == reserved_cidr(VPC, name)
    for other in run.of_type(INSTANCE):
        assert run.depends_on(other, reservation), other.name


def test_web_3_stays_a_web_node(run: ProgramRun) -> None:
    web_3 = node(run, "web-3")
    assert "privateIp" not in web_3.inputs or not web_3.inputs["privateIp"]
    assert not web_3.delete_before_replace
    assert not [r for r in run.of_type(ATTACHMENT) if r.inputs["instanceId"] == web_3.id]
    document = userdata_of(run, "web-3")
    assert "mariadb-server" not in document["packages"]
    config = json.loads(written(document, APP_CONFIG))
    assert config["database"]["tls_ca_file"] == WEB_CA_FILE
    assert written(document, WEB_CA_FILE) == written(userdata_of(run, "web-1"), CA_FILE)


def test_web_2_boots_after_web_1_serves(run: ProgramRun) -> None:
    assert gate(run, "web-1").urn in node(run, "web-2").explicit_dependencies
    assert not run.depends_on(node(run, "web-1"), node(run, "web-2"))


# --- least privilege ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NODES)
def test_the_role_is_a_web_node_s_and_a_database_host_s(run: ProgramRun, name: str) -> None:
    policies = host_policies(run)
    mine, plain = policies[name], policies["web-3"]
    assert mine.tag == "web"
    short = {n.replace(f"-{name}-", "-N-") for n in mine.documents}
    assert short == {n.replace("-web-3-", "-N-") for n in plain.documents} | {
        "web-infra-dev-web-N-identity-database"
    }, "a web node's policies and the database's"
    other = next(n for n in NODES if n != name)
    documents = mine.documents
    for user in ("admin-user", "replication-user", "app-user"):
        assert allowed(
            documents,
            "secretsmanager:GetSecretValue",
            secret_arn(run, f"web-infra-dev/database/{user}"),
        )
    assert allowed(
        documents, "secretsmanager:GetSecretValue", secret_arn(run, f"web-infra-dev/{name}/tls-key")
    )
    assert not allowed(
        documents,
        "secretsmanager:GetSecretValue",
        secret_arn(run, f"web-infra-dev/{other}/tls-key"),
    )
    bucket = f"arn:aws:s3:::web-infra-dev-{ACCOUNT}-{REGION}-backups"
    assert allowed(documents, "s3:PutObject", f"{bucket}/database/full/x.xbstream")
    assert not allowed(documents, "s3:DeleteObject", f"{bucket}/database/full/x.xbstream")
    assert not allowed(documents, "s3:GetObject", f"{bucket}/other/file")
    # Web nodes 3 and up read the app's secret only.
    for user in ("admin-user", "replication-user"):
        arn = secret_arn(run, f"web-infra-dev/database/{user}")
        assert not allowed(plain.documents, "secretsmanager:GetSecretValue", arn)
    assert not allowed(plain.documents, "s3:GetObject", f"{bucket}/database/full/x.xbstream")


@pytest.mark.parametrize("name", NODES)
def test_every_policy_web_1_and_web_2_hold_passes_both_analysers(
    run: ProgramRun, name: str
) -> None:
    findings = {
        n: [*parliament_findings(doc), *cloudsplaining_findings(doc)]
        for n, doc in host_policies(run)[name].documents.items()
    }
    assert not {n: f for n, f in findings.items() if f}, findings


# --- the firewall ---------------------------------------------------------------------------


def test_3306_between_the_web_nodes(run: ProgramRun) -> None:
    groups = {
        r.id: r.name.removeprefix("web-infra-dev-firewall-")
        for r in run.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    assert "database-bootstrap" not in groups.values()
    into_web = sorted(
        (groups[r.inputs["referencedSecurityGroupId"]], r.inputs["fromPort"])
        for r in run.of_type(INGRESS)
        if groups[r.inputs["securityGroupId"]] == "web"
    )
    assert into_web == [("load-balancer", 80), ("web", 3306)]
    out_of_web = sorted(
        (
            r.inputs["fromPort"],
            r.inputs.get("cidrIpv4") or groups[r.inputs["referencedSecurityGroupId"]],
        )
        for r in run.of_type(EGRESS)
        if groups[r.inputs["securityGroupId"]] == "web"
    )
    assert (3306, "web") in out_of_web
    for name in NODES:
        instance = node(run, name)
        assert groups[instance.inputs["vpcSecurityGroupIds"][0]] == "web"


# --- the rendered documents -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "role"), [("web-1", "primary"), ("web-2", "replica")])
def test_the_node_runs_the_database_host_s_steps_after_its_own(
    run: ProgramRun, name: str, role: str
) -> None:
    document = userdata_of(run, name)
    config = json.loads(written(document, CONFIG_FILE))
    assert (config["role"], config["host_name"]) == (role, name)
    assert config["server_id"] == NODES.index(name) + 1
    assert config["primary_host"] == f"db-primary.{ZONE}"
    assert config["secrets"]["app"] == secret_arn(run, "web-infra-dev/database/app-user")
    assert set(PACKAGES) <= set(document["packages"])
    assert {"nginx", "gunicorn"} <= set(document["packages"])
    steps = [" ".join(step) for step in document["runcmd"]]
    assert DATABASE_NODE in steps[0], "the script comes from the artifacts bucket"
    install = steps.index(f"python3 {DATABASE_NODE} install --config {CONFIG_FILE}")
    assert steps[install + 1] == f"python3 {DATABASE_NODE} bootstrap --config {CONFIG_FILE}"
    assert install > steps.index("systemctl restart nginx"), "the app serves meanwhile"
    assert steps[-1].startswith(f"python3 {REPORT_READY}")
    # The app writes to db-primary and reads from db-replica, verifying them with the CA
    # MariaDB has: one copy of it on the node.
    app = json.loads(written(document, APP_CONFIG))["database"]
    assert (app["primary_host"], app["replica_host"]) == (
        f"db-primary.{ZONE}",
        f"db-replica.{ZONE}",
    )
    assert app["tls_ca_file"] == CA_FILE
    assert not [
        f for f in document["write_files"] if f["path"] in (WEB_CA_FILE,) or "rds-ca" in f["path"]
    ]
    assert "rds-ca-bundle" not in json.dumps(document["runcmd"])


@pytest.mark.parametrize("name", NODES)
def test_ready_once_the_app_and_the_database_serve(run: ProgramRun, name: str) -> None:
    """The report runs one command without a shell: `sh -c` joins the app's health and the
    database's check, each parsed here by its own program."""
    document = userdata_of(run, name)
    report = document["runcmd"][-1]
    assert "--check-url" not in report
    words = shlex.split(report[report.index("--check-command") + 1])
    assert words[:2] == ["sh", "-c"]
    health, check = words[2].split(" && ")
    assert health == "curl --fail --silent --output /dev/null http://127.0.0.1:80/health"
    check_words = shlex.split(check)
    assert check_words[1] == DATABASE_NODE
    assert database_node.arguments().parse_args(check_words[2:]).step == "check"
    with patch.object(report_ready, "wait_for_command", return_value=False) as waited:
        assert report_ready.main(report[2:]) == 1
    assert shlex.split(waited.call_args[0][0]) == words
    assert f"/web-infra-dev/ready/{name}" in report


def test_the_certificates_name_the_node_and_the_app_s_name_for_its_database(
    run: ProgramRun,
) -> None:
    for name, alias in (("web-1", "db-primary"), ("web-2", "db-replica")):
        document = userdata_of(run, name)
        ca = x509.load_pem_x509_certificate(written(document, CA_FILE).encode())
        server = x509.load_pem_x509_certificate(written(document, CERT_FILE).encode())
        server.verify_directly_issued_by(ca)
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [f"{name}.{ZONE}", f"{alias}.{ZONE}"]


def test_no_secret_reaches_userdata_or_outputs(run: ProgramRun) -> None:
    passwords = [
        r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")
    ]
    keys = [r.outputs["privateKeyPem"] for r in run.of_type("tls:index/privateKey:PrivateKey")]
    assert (len(passwords), len(keys)) == (3, 3)
    everything = json.dumps(run.outputs) + "".join(
        str(r.inputs.get("userData", "")) for r in run.of_type(INSTANCE)
    )
    for secret in [*passwords, *[k.strip().splitlines()[1] for k in keys]]:
        assert secret not in everything


def largest_colocated_userdata(run: ProgramRun) -> list[str]:
    """The biggest web-1's and web-2's userdata get: a long stack name, long ARNs."""
    settings = load_settings({"dbMode": "colocated"}, stack="production-eu-central")
    arn = "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:" + "x" * 120
    document = userdata_of(run, "web-1")
    made = DatabaseHostResources(
        "vol-0123456789abcdef0",
        DatabaseSecrets(arn, arn, arn),
        arn,
        written(document, CA_FILE),
        written(document, CERT_FILE),
    )
    return [
        colocated_web_userdata(settings, "ap-southeast-2", ACCOUNT, made, name)[0] for name in NODES
    ]


def test_the_userdata_passes_cloud_init_schema_and_the_size_limit(
    run: ProgramRun, tmp_path: Path
) -> None:
    cloud_init = require("cloud-init")
    documents = {n: node(run, n).inputs["userData"] for n in NODES}
    documents |= {f"largest-{i}": u for i, u in enumerate(largest_colocated_userdata(run))}
    for name, userdata in documents.items():
        assert len(userdata.encode()) < EC2_USERDATA_LIMIT, name
        path = tmp_path / f"{name}.yaml"
        path.write_text(userdata)
        result = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_the_database_script_is_an_artifact_of_web_1_and_web_2() -> None:
    settings = load_settings({"dbMode": "colocated"}, stack="dev")
    files = render_hosts(settings, REGION, ACCOUNT).files
    (script,) = [f for f in files if f.file.destination == DATABASE_NODE]
    assert script.hosts == NODES


def test_a_file_both_documents_write_differently_is_refused() -> None:
    web = {"packages": [], "write_files": [{"path": "/a", "content": "1"}], "runcmd": []}
    database = {"packages": [], "write_files": [{"path": "/a", "content": "2"}], "runcmd": []}
    with pytest.raises(ValueError, match="both write /a"):
        with_database(web, database)


def test_a_first_preview_registers_every_database_resource() -> None:
    preview = run_program({"dbMode": "colocated"}, preview=True)
    assert len(preview.instances("web")) == 2
    assert len(preview.of_type(VOLUME)) == 2
    assert len(preview.of_type(ATTACHMENT)) == 2
    assert not [r for r in preview.registrations if r.type.startswith("aws:rds/")]


# --- watched --------------------------------------------------------------------------------


def agent_config_of(run: ProgramRun, name: str) -> dict[str, Any]:
    """The agent's config the node fetches at boot: its key in the userdata's fetch step, its
    content in the artifacts bucket."""
    (fetch,) = [s for s in userdata_of(run, name)["runcmd"] if s[:2] == ["python3", FETCH_ARTIFACT]]
    files = [fetch[i + 1 : i + 5] for i, word in enumerate(fetch) if word == "--file"]
    (key,) = [key for key, _, destination, _ in files if destination == AGENT_CONFIG_PATH]
    (found,) = [
        o for o in run.of_type("aws:s3/bucketObjectv2:BucketObjectv2") if o.inputs["key"] == key
    ]
    config: dict[str, Any] = json.loads(found.inputs["content"])
    return config


@pytest.mark.parametrize("name", NODES)
def test_the_agent_of_web_1_and_web_2_sends_the_data_volume_s_disk(
    run: ProgramRun, name: str
) -> None:
    disk = agent_config_of(run, name)["metrics"]["metrics_collected"]["disk"]
    assert disk["resources"] == ["/", "/srv/database"]
    assert disk["append_dimensions"] == {"Node": name}


def test_web_3_s_agent_sends_its_root_disk_only(run: ProgramRun) -> None:
    config = agent_config_of(run, "web-3")
    assert config["metrics"]["metrics_collected"]["disk"]["resources"] == ["/"]
    assert "logs" in config, "still a web node's: its logs and exporter"


@pytest.mark.parametrize(("name", "reports"), [("web-1", False), ("web-2", True)])
def test_the_replica_s_node_runs_the_replication_report(
    run: ProgramRun, name: str, reports: bool, tmp_path: Path
) -> None:
    """`install` (in the node's runcmd) enables the timers its config's role asks for: the
    report on web-2 only, publishing in the namespace its role may publish in."""
    document = userdata_of(run, name)
    assert ["python3", DATABASE_NODE, "install", "--config", CONFIG_FILE] in document["runcmd"]
    path = tmp_path / "config.json"
    path.write_text(written(document, CONFIG_FILE))
    config = database_node.Config.load(str(path))
    report = f"{database_node.REPORT_UNIT}.timer"
    assert (report in database_node.timers(config)) is reports
    assert report in database_node.units(CONFIG_FILE)
    assert config.metrics_namespace == "WebInfra/web-infra-dev"

    def put(where: str) -> bool:
        return allowed(
            host_policies(run)[name].documents,
            "cloudwatch:PutMetricData",
            "*",
            **{"cloudwatch:namespace": where},
        )

    assert put(config.metrics_namespace)
    assert not put("WebInfra/web-infra-other")
    assert not put("AWS/EC2")


def test_the_program_watches_the_database_on_web_1_and_web_2(run: ProgramRun) -> None:
    """Each node's data volume and the replica's replication, under the node's own `Node`,
    with the thresholds of `dbMode: ec2`; their instance alarms stay the web nodes' (one each),
    and no database host is watched."""
    made = [
        a.inputs["name"].removeprefix("web-infra-dev-")
        for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    ]
    alarms = {
        a.inputs["name"].removeprefix("web-infra-dev-"): a.inputs
        for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert len(made) == len(alarms), "no alarm made twice"
    for name in NODES:
        data = alarms[f"{name}-data-disk"]
        assert data["dimensions"] == {"Node": name, "path": "/srv/database", "fstype": "ext4"}
        assert (data["metricName"], data["threshold"]) == ("disk_used_percent", 80)
        assert alarms[f"{name}-cpu"]["dimensions"] == {"InstanceId": node(run, name).id}
    lag, stopped = alarms["web-2-replication-lag"], alarms["web-2-replication-stopped"]
    assert (lag["metricName"], lag["dimensions"], lag["threshold"]) == (
        "ReplicationLagSeconds",
        {"Node": "web-2"},
        30,
    )
    assert (stopped["metricName"], stopped["dimensions"]) == (
        "ReplicationRunning",
        {"Node": "web-2"},
    )
    assert (stopped["treatMissingData"], stopped["evaluationPeriods"]) == ("breaching", 3)
    assert "web-3-data-disk" not in alarms
    assert "web-1-replication-stopped" not in alarms
    assert not [a for a in alarms if a.startswith("database-")]
    (dashboard,) = run.of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.inputs["dashboardBody"])
    by_title = {w["properties"]["title"]: w["properties"] for w in body["widgets"]}
    data_widget = by_title["Database hosts: data volume (/srv/database) used %"]
    assert [m[-1]["label"] for m in data_widget["metrics"]] == [
        "web-1 disk /srv/database",
        "web-2 disk /srv/database",
    ]
    assert "Replication running (1) or stopped (0)" in by_title
    assert "AWS/RDS" not in dashboard.inputs["dashboardBody"]
