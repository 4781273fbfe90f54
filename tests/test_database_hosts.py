"""`dbMode: ec2` under the AWS-like mocks: the database hosts' graph, permissions, firewall
and rendered documents, as the engine and AWS would see them.

What a boot proves (MariaDB replicating over TLS, a replaced host keeping its data) is the boot
lab's; here: the data volume outlives every instance, names exist before the hosts boot, the
replica boots after the primary serves, each host may read exactly its secrets and backups,
3306 is open to the web tier and between the two hosts only, and the userdata is valid,
small enough, and holds no secret.
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
from cryptography.hazmat.primitives.asymmetric import ec
from iam_support import host_policies
from system_tools import require
from test_iam_policies import cloudsplaining_findings, parliament_findings

from components.database_hosts import backup_statements, read_secrets_statement
from components.rendered_hosts import (
    DatabaseHostResources,
    database_host_userdata,
    render_hosts,
)
from lab.boot.policy import Decision, Request, evaluate
from settings import load_settings
from settings.database_hosts import fixed_private_ip, reserved_cidr
from tools.mocked_program import ACCOUNT, REGION, ProgramRun, Registration, run_program
from userdata.cloud_config import (
    EC2_USERDATA_LIMIT,
    REPORT_READY_TIMEOUT_SECONDS,
    file_content,
    parse,
)
from userdata.database_host import (
    CA_FILE,
    CERT_FILE,
    CONFIG_FILE,
    DATABASE_NODE,
    WEB_CA_FILE,
    DatabaseSecrets,
    with_database_ca,
)
from userdata.scripts import database_node, report_ready
from userdata.web_node_config import RDS_CA_BUNDLE

HOSTS = ("database-1", "database-2")
INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
RECORD = "aws:route53/record:Record"
RESERVATION = "aws:ec2/subnetCidrReservation:SubnetCidrReservation"
SECRET = "aws:secretsmanager/secret:Secret"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program({"dbMode": "ec2", "dbAllocatedStorageGb": 50, "dbBackupRetentionDays": 9})


def host_instance(run: ProgramRun, host: str) -> Registration:
    return run.one(INSTANCE, f"web-infra-dev-{host}")


def gate(run: ProgramRun, host: str) -> Registration:
    (found,) = [
        r
        for r in run.registrations
        if r.type.startswith("pulumi-python:dynamic") and r.name == f"web-infra-dev-{host}-gate"
    ]
    return found


def secret_arn(run: ProgramRun, name: str) -> str:
    (found,) = [r for r in run.of_type(SECRET) if r.inputs["name"] == name]
    return str(found.outputs["arn"])


def userdata_of(run: ProgramRun, host: str) -> dict[str, Any]:
    return parse(host_instance(run, host).inputs["userData"])


def written(document: dict[str, Any], path: str) -> str:
    (entry,) = [f for f in document["write_files"] if f["path"] == path]
    return file_content(entry).decode()


# --- no RDS, the same outputs ---------------------------------------------------------------


def test_ec2_mode_makes_no_rds_and_no_bootstrap_function(run: ProgramRun) -> None:
    made = {r.type for r in run.registrations}
    assert not {t for t in made if t.startswith(("aws:rds/", "aws:lambda/"))}
    assert not [r for r in run.registrations if "database-bootstrap" in r.name]
    assert run.outputs["db_primary_endpoint"] == "database-1.dev.web-infra.internal:3306"
    assert run.outputs["db_replica_endpoint"] == "database-2.dev.web-infra.internal:3306"
    # The app's names follow the hosts.
    records = {r.inputs["name"]: r.inputs for r in run.of_type(RECORD)}
    assert records["db-primary.dev.web-infra.internal"]["records"] == [
        "database-1.dev.web-infra.internal"
    ]
    assert records["db-replica.dev.web-infra.internal"]["records"] == [
        "database-2.dev.web-infra.internal"
    ]


def test_rds_mode_makes_no_database_host(default_run: ProgramRun) -> None:
    assert default_run.instances("database") == []
    assert default_run.of_type(VOLUME) == []
    assert not [r for r in default_run.registrations if r.type.startswith("tls:")]


# --- the graph ------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "host"), list(enumerate(HOSTS)))
def test_the_data_volume_outlives_the_instance(run: ProgramRun, index: int, host: str) -> None:
    volume = run.one(VOLUME, f"{host}-data")
    instance = host_instance(run, host)
    assert volume.protect, "protect: destroy and replacement stop at the data"
    assert volume.inputs["encrypted"] is True
    assert volume.inputs["type"] == "gp3"
    assert volume.inputs["size"] == 50
    assert volume.inputs["finalSnapshot"] is True
    assert volume.inputs["availabilityZone"] == ["eu-west-1a", "eu-west-1b"][index]
    (subnet,) = [
        r for r in run.of_type("aws:ec2/subnet:Subnet") if r.id == instance.inputs["subnetId"]
    ]
    assert subnet.inputs["availabilityZone"] == volume.inputs["availabilityZone"]
    assert subnet.inputs["cidrBlock"] == ["10.20.128.0/18", "10.20.192.0/18"][index], "private"
    # Nothing of the instance (image, userdata) reaches the volume: no change of it replaces it.
    assert not run.depends_on(volume, instance)
    assert volume.dependencies == set()
    attachment = run.one(ATTACHMENT, host)
    assert attachment.inputs["volumeId"] == volume.id
    assert attachment.inputs["instanceId"] == instance.id
    assert attachment.inputs["deviceName"] == "/dev/sdf"
    assert attachment.inputs["stopInstanceBeforeDetaching"] is True
    # The volume's id is in the host's config: the script finds the device by it.
    config = json.loads(written(userdata_of(run, host), CONFIG_FILE))
    assert config["volume_id"] == volume.id


@pytest.mark.parametrize(("index", "host"), list(enumerate(HOSTS)))
def test_the_name_and_address_exist_before_the_host_boots(
    run: ProgramRun, index: int, host: str
) -> None:
    instance = host_instance(run, host)
    address = fixed_private_ip("10.20.0.0/16", index)
    assert instance.inputs["privateIp"] == address
    assert instance.delete_before_replace, "a fixed address and a volume: delete, then create"
    record = run.one(RECORD, f"web-infra-dev-{host}-record")
    assert record.inputs["records"] == [address]
    assert record.inputs["name"] == f"{host}.dev.web-infra.internal"
    assert record.urn in instance.explicit_dependencies
    reservation = run.one(RESERVATION, f"{host}-address")
    assert reservation.inputs["reservationType"] == "explicit"
    assert reservation.inputs["cidrBlock"] == reserved_cidr("10.20.0.0/16", index)
    assert run.depends_on(instance, reservation)
    # No web node can take the address: each launches after the reservations.
    for web in run.instances("web"):
        assert run.depends_on(web, reservation), web.name


def test_the_replica_boots_after_the_primary_serves(run: ProgramRun) -> None:
    primary_gate = gate(run, "database-1")
    replica = host_instance(run, "database-2")
    assert primary_gate.urn in replica.explicit_dependencies
    assert not run.depends_on(host_instance(run, "database-1"), replica)
    # The web tier never waits for the database hosts (it answers 503 meanwhile).
    for web in run.instances("web"):
        assert not run.depends_on(web, host_instance(run, "database-1")), web.name


# --- least privilege ------------------------------------------------------------------------


def allowed(
    documents: dict[str, dict[str, Any]], action: str, resource: str, **context: Any
) -> bool:
    return (
        evaluate(list(documents.values()), Request(action, resource, context or None))
        is Decision.ALLOWED
    )


@pytest.mark.parametrize("host", HOSTS)
def test_each_host_reads_exactly_its_secrets_and_backups(run: ProgramRun, host: str) -> None:
    policies = host_policies(run)[host]
    assert policies.tag == "database"
    assert set(policies.documents) >= {f"web-infra-dev-{host}-identity-database"}
    documents = policies.documents
    other = next(h for h in HOSTS if h != host)
    mine = [
        secret_arn(run, "web-infra-dev/database/admin-user"),
        secret_arn(run, "web-infra-dev/database/replication-user"),
        secret_arn(run, "web-infra-dev/database/app-user"),
        secret_arn(run, f"web-infra-dev/{host}/tls-key"),
    ]
    for arn in mine:
        assert allowed(documents, "secretsmanager:GetSecretValue", arn), arn
    (database,) = [d for name, d in documents.items() if name.endswith("-database")]
    (reads,) = [s for s in database["Statement"] if s["Sid"] == "ReadTheDatabaseSecrets"]
    assert sorted(reads["Resource"]) == sorted(mine), "exactly these four, no wildcard"
    assert not allowed(
        documents,
        "secretsmanager:GetSecretValue",
        secret_arn(run, f"web-infra-dev/{other}/tls-key"),
    )
    assert not allowed(documents, "secretsmanager:PutSecretValue", mine[0])
    bucket = f"arn:aws:s3:::web-infra-dev-{ACCOUNT}-{REGION}-backups"
    assert allowed(documents, "s3:PutObject", f"{bucket}/database/full/2026-01-01.xbstream")
    assert allowed(documents, "s3:GetObject", f"{bucket}/database/binlog/mysql-bin.000001")
    assert allowed(documents, "s3:ListBucket", bucket, **{"s3:prefix": "database/full/"})
    assert not allowed(documents, "s3:ListBucket", bucket, **{"s3:prefix": "other/"})
    assert not allowed(documents, "s3:GetObject", f"{bucket}/other/file")
    assert not allowed(documents, "s3:DeleteObject", f"{bucket}/database/full/x")
    # The script's keys, and a failed upload in parts aborted.
    assert allowed(documents, "s3:PutObject", f"{bucket}/database/full/20260101T000000Z.xbstream")
    assert allowed(documents, "s3:PutObject", f"{bucket}/database/binlog/{host}/{host}-bin.000001")
    assert allowed(documents, "s3:AbortMultipartUpload", f"{bucket}/database/full/x.xbstream")
    assert not allowed(documents, "s3:AbortMultipartUpload", f"{bucket}/other/x")
    assert not allowed(documents, "s3:PutBucketPolicy", bucket)
    assert not allowed(documents, "rds:DescribeDBInstances", "*")
    assert not allowed(documents, "ec2:AttachVolume", "*")


@pytest.mark.parametrize("host", HOSTS)
def test_each_host_publishes_metrics_to_the_stacks_namespace_only(
    run: ProgramRun, host: str
) -> None:
    """The agent's memory and disks and the replica's replication reports: PutMetricData in
    the stack's namespace (the config's), nothing of CloudWatch Logs (no log is shipped), and
    the policy is on the role before the instance boots."""
    policies = host_policies(run)[host]
    documents = policies.documents
    namespace = json.loads(written(userdata_of(run, host), CONFIG_FILE))["metrics"]["namespace"]
    assert namespace == "WebInfra/web-infra-dev"

    def put(where: str) -> bool:
        return allowed(
            documents, "cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": where}
        )

    assert put(namespace)
    assert not put("WebInfra/web-infra-other")
    assert not put("AWS/EC2")
    assert not allowed(documents, "cloudwatch:PutMetricAlarm", "*")
    assert not allowed(documents, "logs:PutLogEvents", "*")
    assert not allowed(documents, "ec2:DescribeTags", "*")
    metrics = run.one("aws:iam/rolePolicy:RolePolicy", f"{host}-identity-metrics-agent")
    assert run.depends_on(host_instance(run, host), metrics), "published from the first boot"


@pytest.mark.parametrize("host", HOSTS)
def test_every_policy_a_database_host_holds_passes_both_analysers(
    run: ProgramRun, host: str
) -> None:
    findings = {
        name: [*parliament_findings(doc), *cloudsplaining_findings(doc)]
        for name, doc in host_policies(run)[host].documents.items()
    }
    assert not {name: f for name, f in findings.items() if f}, findings


def test_the_web_nodes_read_the_app_secret_the_primary_sets(run: ProgramRun) -> None:
    app = secret_arn(run, "web-infra-dev/database/app-user")
    for host, policies in host_policies(run).items():
        if policies.tag != "web":
            continue
        assert allowed(policies.documents, "secretsmanager:GetSecretValue", app), host
        for other in ("admin-user", "replication-user"):
            arn = secret_arn(run, f"web-infra-dev/database/{other}")
            assert not allowed(policies.documents, "secretsmanager:GetSecretValue", arn)


def test_the_statements_name_what_they_are_given() -> None:
    """The builders themselves: a wildcard could not slip in through them."""
    assert read_secrets_statement(["b", "a"])["Resource"] == ["a", "b"]
    listing, objects = backup_statements("arn:aws:s3:::bucket")
    assert listing["Resource"] == "arn:aws:s3:::bucket"
    assert objects["Resource"] == "arn:aws:s3:::bucket/database/*"
    assert objects["Action"] == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]


# --- the firewall ---------------------------------------------------------------------------


def test_3306_from_the_web_tier_and_between_the_hosts_only(run: ProgramRun) -> None:
    groups = {
        r.id: r.name.removeprefix("web-infra-dev-firewall-")
        for r in run.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    assert "database-bootstrap" not in groups.values()
    into_database = [
        r for r in run.of_type(INGRESS) if groups[r.inputs["securityGroupId"]] == "database"
    ]
    sources = sorted(
        (groups[r.inputs["referencedSecurityGroupId"]], r.inputs["fromPort"], r.inputs["toPort"])
        for r in into_database
    )
    assert sources == [("database", 3306, 3306), ("web", 3306, 3306)]
    assert not [r for r in into_database if r.inputs.get("cidrIpv4")]
    out = sorted(
        (
            r.inputs["fromPort"],
            r.inputs.get("cidrIpv4") or groups[r.inputs["referencedSecurityGroupId"]],
        )
        for r in run.of_type(EGRESS)
        if groups[r.inputs["securityGroupId"]] == "database"
    )
    assert out == [(80, "0.0.0.0/0"), (443, "0.0.0.0/0"), (3306, "database")]
    for rule in run.of_type(INGRESS):
        assert rule.inputs.get("fromPort") != 22, rule.name
    for host in HOSTS:
        instance = host_instance(run, host)
        assert instance.inputs["associatePublicIpAddress"] is False
        assert groups[instance.inputs["vpcSecurityGroupIds"][0]] == "database"
        assert "keyName" not in instance.inputs


# --- secrets, certificates and the backup bucket ---------------------------------------------


def test_no_secret_reaches_userdata_or_outputs(run: ProgramRun) -> None:
    passwords = [
        r.outputs["result"] for r in run.of_type("random:index/randomPassword:RandomPassword")
    ]
    keys = [r.outputs["privateKeyPem"] for r in run.of_type("tls:index/privateKey:PrivateKey")]
    assert len(passwords) == 3
    assert len(keys) == 3
    everything = json.dumps(run.outputs) + "".join(
        str(r.inputs.get("userData", "")) for r in run.of_type(INSTANCE)
    )
    for secret in [*passwords, *[k.strip().splitlines()[1] for k in keys]]:
        assert secret not in everything


@pytest.mark.parametrize(
    ("host", "alias"), [("database-1", "db-primary"), ("database-2", "db-replica")]
)
def test_the_server_certificate_is_the_ca_s_for_the_host_s_names(
    run: ProgramRun, host: str, alias: str
) -> None:
    document = userdata_of(run, host)
    ca = x509.load_pem_x509_certificate(written(document, CA_FILE).encode())
    server = x509.load_pem_x509_certificate(written(document, CERT_FILE).encode())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        f"{host}.dev.web-infra.internal",
        f"{alias}.dev.web-infra.internal",
    ]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    # The key is a secret's value, and the config names that secret.
    config = json.loads(written(document, CONFIG_FILE))
    assert config["tls"]["key_secret"] == secret_arn(run, f"web-infra-dev/{host}/tls-key")
    (version,) = [
        r
        for r in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
        if r.name == f"web-infra-dev-{host}-tls-key-value"
    ]
    assert "PRIVATE KEY" in json.dumps(version.inputs["secretString"])


def test_the_replica_verifies_the_primary_by_a_name_its_certificate_holds(
    run: ProgramRun,
) -> None:
    """The replica connects to `primary_host` with MASTER_SSL_VERIFY_SERVER_CERT: the primary's
    certificate must name it, and be the CA's the replica holds."""
    replica = userdata_of(run, "database-2")
    primary = userdata_of(run, "database-1")
    wanted = json.loads(written(replica, CONFIG_FILE))["primary_host"]
    server = x509.load_pem_x509_certificate(written(primary, CERT_FILE).encode())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert wanted in names.get_values_for_type(x509.DNSName)
    server.verify_directly_issued_by(
        x509.load_pem_x509_certificate(written(replica, CA_FILE).encode())
    )


def test_the_backup_bucket_is_private_versioned_encrypted_and_expires_backups(
    run: ProgramRun,
) -> None:
    bucket = run.one("aws:s3/bucket:Bucket", "backups")
    assert bucket.inputs["bucket"] == f"web-infra-dev-{ACCOUNT}-{REGION}-backups"
    assert bucket.inputs["forceDestroy"] is False
    versioning = run.one("aws:s3/bucketVersioning:BucketVersioning", "backups")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    encryption = run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "backups",
    )
    (rule,) = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "backups")
    assert all(
        block.inputs[k]
        for k in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    lifecycle = run.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "backups"
    )
    (expire,) = lifecycle.inputs["rules"]
    assert expire["filter"]["prefix"] == "database/"
    assert expire["expiration"]["days"] == 9
    assert expire["noncurrentVersionExpiration"]["noncurrentDays"] == 9
    # A host killed during a backup leaves an upload in parts: S3 aborts it the next day.
    assert expire["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1
    assert run.depends_on(lifecycle, versioning)


# --- the rendered documents -----------------------------------------------------------------


@pytest.mark.parametrize(("host", "role"), [("database-1", "primary"), ("database-2", "replica")])
def test_the_host_config_is_the_scripts_interface(run: ProgramRun, host: str, role: str) -> None:
    document = userdata_of(run, host)
    config = json.loads(written(document, CONFIG_FILE))
    assert config == {
        "role": role,
        "host_name": host,
        "server_id": HOSTS.index(host) + 1,
        "region": REGION,
        "database": "webapp",
        "primary_host": "database-1.dev.web-infra.internal",
        "volume_id": run.one(VOLUME, f"{host}-data").id,
        "mount": "/srv/database",
        "secrets": {
            "admin": secret_arn(run, "web-infra-dev/database/admin-user"),
            "replication": secret_arn(run, "web-infra-dev/database/replication-user"),
            "app": secret_arn(run, "web-infra-dev/database/app-user"),
        },
        "tls": {
            "ca_file": "/etc/mysql/tls/ca.pem",
            "cert_file": "/etc/mysql/tls/server.pem",
            "key_secret": secret_arn(run, f"web-infra-dev/{host}/tls-key"),
            "key_file": "/etc/mysql/tls/server.key",
        },
        "backup": {
            "bucket": f"web-infra-dev-{ACCOUNT}-{REGION}-backups",
            "prefix": "database/",
            "retention_days": 9,
        },
        "metrics": {"namespace": "WebInfra/web-infra-dev"},
        "max_connections": 250,
    }
    (entry,) = [f for f in document["write_files"] if f["path"] == CONFIG_FILE]
    assert entry["permissions"] == "0640"
    assert entry["owner"] == "root:root"
    # gnupg checks the metrics agent's package.
    assert document["packages"] == ["mariadb-server", "mariadb-backup", "python3-boto3", "gnupg"]
    steps = [" ".join(step) for step in document["runcmd"]]
    assert steps[0].startswith("python3 /usr/local/lib/web-infra/fetch_artifact.py")
    assert DATABASE_NODE in steps[0], "the script comes from the artifacts bucket"
    assert steps[1:4] == [
        f"python3 {DATABASE_NODE} install --config {CONFIG_FILE}",
        f"python3 {DATABASE_NODE} bootstrap --config {CONFIG_FILE}",
        "/usr/local/sbin/install-cloudwatch-agent",
    ]
    assert steps[4].startswith("python3 /usr/local/lib/web-infra/report_ready.py")
    assert f"/web-infra-dev/ready/{host}" in steps[4]
    assert f"--check-command python3 {DATABASE_NODE} check --config {CONFIG_FILE}" in steps[4]


@pytest.mark.parametrize("host", HOSTS)
def test_every_command_line_the_host_runs_is_the_script_s(run: ProgramRun, host: str) -> None:
    """The runcmd steps, the readiness report's check and the timers' units, parsed by the
    real script's (and the report's) argument parsers: a renamed option fails here, not at
    boot."""
    document = userdata_of(run, host)
    parsed = []
    node_steps = [step for step in document["runcmd"] if step[1:2] == [DATABASE_NODE]]
    (report,) = [s for s in document["runcmd"] if s[1:] and s[1].endswith("/report_ready.py")]
    check = shlex.split(report[report.index("--check-command") + 1])
    units = database_node.units(CONFIG_FILE)
    execs = [
        shlex.split(line.removeprefix("ExecStart="))
        for text in units.values()
        for line in text.splitlines()
        if line.startswith("ExecStart=")
    ]
    for words in [*node_steps, check, *execs]:
        assert words[0].rsplit("/", 1)[-1] == "python3", words
        assert words[1] == DATABASE_NODE, words
        args = database_node.arguments().parse_args(words[2:])
        assert args.config == CONFIG_FILE, words
        parsed.append(args.step)
    assert parsed == [
        "install",
        "bootstrap",
        "check",
        "backup",
        "ship-binlogs",
        "replication-report",
    ]
    # The report's own options, by its parser: the check runs (here: fails at once), no usage
    # error.
    with patch.object(report_ready, "wait_for_command", return_value=False) as waited:
        assert report_ready.main(report[2:]) == 1
    (command, timeout), _ = waited.call_args
    assert shlex.split(command) == check
    assert timeout == REPORT_READY_TIMEOUT_SECONDS


def test_the_database_script_is_an_artifact(run: ProgramRun) -> None:
    objects = [r.inputs["key"] for r in run.of_type("aws:s3/bucketObjectv2:BucketObjectv2")]
    assert [k for k in objects if k.endswith("/database_node.py")]
    settings = load_settings({"dbMode": "ec2"}, stack="dev")
    labels = [f.label for f in render_hosts(settings, REGION, ACCOUNT).files]
    assert "database-database_node.py" in labels
    rds = render_hosts(load_settings({}, stack="dev"), REGION, ACCOUNT).files
    assert not [f for f in rds if f.file.destination == DATABASE_NODE]


def largest_database_userdata() -> list[str]:
    """The biggest a database host's userdata gets: a long stack name, long ARNs."""
    settings = load_settings({"dbMode": "ec2"}, stack="production-eu-central")
    arn = "arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:" + "x" * 120
    run = run_program({"dbMode": "ec2"})
    ca = written(userdata_of(run, "database-1"), CA_FILE)
    cert = written(userdata_of(run, "database-1"), CERT_FILE)
    made = DatabaseHostResources(
        "vol-0123456789abcdef0", DatabaseSecrets(arn, arn, arn), arn, ca, cert
    )
    return [
        database_host_userdata(settings, "ap-southeast-2", ACCOUNT, made, host)[0] for host in HOSTS
    ]


def test_database_userdata_passes_cloud_init_schema_and_the_size_limit(
    run: ProgramRun, tmp_path: Path
) -> None:
    cloud_init = require("cloud-init")
    documents = {h: host_instance(run, h).inputs["userData"] for h in HOSTS}
    documents |= {f"largest-{i}": u for i, u in enumerate(largest_database_userdata())}
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


def test_the_web_nodes_verify_the_hosts_with_the_stack_s_ca(run: ProgramRun) -> None:
    ca = written(userdata_of(run, "database-1"), CA_FILE)
    for web in run.instances("web"):
        document = parse(web.inputs["userData"])
        assert written(document, WEB_CA_FILE) == ca
        config = json.loads(written(document, "/etc/web-app/config.json"))
        assert config["database"]["tls_ca_file"] == WEB_CA_FILE
        assert config["database"]["primary_host"] == "db-primary.dev.web-infra.internal"
        assert not [f for f in document["write_files"] if "rds-ca-bundle" in f["path"]]
        assert ["systemctl", "start", "rds-ca-bundle.service"] not in document["runcmd"]
        assert RDS_CA_BUNDLE not in web.inputs["userData"]


def test_the_web_document_change_fails_loudly_when_its_target_moves() -> None:
    """`with_database_ca` edits the web node's document: if that document stops downloading
    RDS's bundle the way it expects, it refuses instead of writing a half-changed one."""
    settings = load_settings({}, stack="dev")
    web = render_hosts(settings, REGION, ACCOUNT).web["web-1"]
    assert "tls_ca_file" in with_database_ca(web, "CA\n")
    moved = web.replace("rds-ca-bundle.service", "ca-download.service")
    with pytest.raises(ValueError, match="no longer downloads RDS's CA bundle"):
        with_database_ca(moved, "CA\n")


def test_a_first_preview_of_an_ec2_stack_registers_every_database_resource() -> None:
    """Before anything exists, the hosts' userdata waits for their volume, secrets and
    certificate: the preview still shows every resource that would be made."""
    preview = run_program({"dbMode": "ec2"}, preview=True)
    assert len(preview.instances("database")) == 2
    assert len(preview.of_type(VOLUME)) == 2
    assert len(preview.of_type(ATTACHMENT)) == 2
    assert not [r for r in preview.registrations if r.type.startswith("aws:rds/")]


def test_no_web_node_gets_a_database_host_s_address() -> None:
    """The most web nodes `ec2` allows: the addresses AWS hands out skip the reservations."""
    big = run_program({"dbMode": "ec2", "webNodeCount": 11})
    addresses = [r.outputs["privateIp"] for r in big.of_type(INSTANCE)]
    assert len(addresses) == len(set(addresses)) == 11 + 2 + 2


def test_no_alarm_or_dashboard_line_watches_rds_that_is_not_there(run: ProgramRun) -> None:
    """On EC2 there is no RDS instance: an RDS alarm would sit without data for ever, and a
    dashboard line would stay empty. (The database hosts' own alarms watch them instead.)"""
    alarms = run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms, "the stack's other alarms are still made"
    watched = {
        str(query.get("metric", {}).get("namespace"))
        for alarm in alarms
        for query in [alarm.inputs, *alarm.inputs.get("metricQueries", [])]
        if isinstance(query, dict)
    } | {str(alarm.inputs.get("namespace")) for alarm in alarms}
    assert "AWS/RDS" not in watched
    assert not [a.inputs["name"] for a in alarms if "-db-" in a.inputs["name"]]
    (dashboard,) = run.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert "AWS/RDS" not in str(dashboard.inputs["dashboardBody"])
    assert "Healthy web nodes" in str(dashboard.inputs["dashboardBody"])  # the rest stays


def test_the_program_watches_each_database_host_by_its_instance(run: ProgramRun) -> None:
    """The whole program: each host's instance alarms read its own instance, its agent's
    series its own `Node`, the replica's replication alarms the replica's reports, and the
    dashboard shows them."""
    alarms = {
        a.inputs["name"].removeprefix("web-infra-dev-"): a.inputs
        for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    for host in HOSTS:
        instance = host_instance(run, host).id
        for kind in ("cpu", "instance-check", "system-check-recover"):
            assert alarms[f"{host}-{kind}"]["dimensions"] == {"InstanceId": instance}, kind
        for kind in ("memory", "disk", "data-disk"):
            assert alarms[f"{host}-{kind}"]["dimensions"]["Node"] == host, kind
        assert alarms[f"{host}-data-disk"]["dimensions"]["path"] == "/srv/database"
    assert alarms["database-2-replication-lag"]["dimensions"] == {"Node": "database-2"}
    assert alarms["database-2-replication-stopped"]["treatMissingData"] == "breaching"
    assert "database-1-replication-stopped" not in alarms
    (dashboard,) = run.of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.inputs["dashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert "Replication running (1) or stopped (0)" in titles
    assert "Database hosts: CPU %" in titles
