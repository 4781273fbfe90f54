"""A database host's `#cloud-config` (`dbMode: ec2`), and the web nodes' view of those hosts.

Pure, like `cloud_config`: a host's document is built from its `DatabaseHostConfig` and the
stack's CA and server certificate (public), so the program renders it once those exist (the
data volume's id, the secrets' ARNs and the certificate are AWS's and pulumi-tls's). The
config file is the interface to `scripts/database_node.py`, which does the work on the host:
mounts the data volume, configures and starts MariaDB, creates the users (primary) or starts
replicating (replica), and keeps the backups. Passwords and the server's key never appear here:
the config names their Secrets Manager secrets, and the host reads them with its role.

The web nodes keep their document, with one change (`with_database_ca`): the app verifies the
database hosts against the stack's CA, written inline, instead of downloading RDS's bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settings import database_hosts as database_shape
from userdata import cloud_config, web_node_config
from userdata.cloudwatch_agent import merge_fragment
from userdata.metric_catalog import DATA_VOLUME_MOUNT
from userdata.shipping import ArtifactStore, ShippedFile, offload

HERE = Path(__file__).parent
DATABASE_NODE_SOURCE = HERE / "scripts" / "database_node.py"
DATABASE_NODE = "/usr/local/lib/web-infra/database_node.py"
CONFIG_FILE = "/etc/web-infra/database.json"
MOUNT = DATA_VOLUME_MOUNT
"""The data volume's mount, whose disk use the metrics agent reports."""
DATA_DEVICE = "/dev/sdf"
"""The data volume's device name in EC2's API; a Nitro host sees it as NVMe, by volume id."""
TLS_DIR = "/etc/mysql/tls"
CA_FILE = f"{TLS_DIR}/ca.pem"
CERT_FILE = f"{TLS_DIR}/server.pem"
KEY_FILE = f"{TLS_DIR}/server.key"
BACKUP_PREFIX = "database/"
PACKAGES = ["mariadb-server", "mariadb-backup", "python3-boto3"]
WEB_CA_FILE = f"{web_node_config.APP_CONFIG_DIR}/database-ca.pem"
"""Where a web node keeps the stack's database CA (the app's `tls_ca_file`)."""
_RDS_CA_UNIT = "rds-ca-bundle.service"
_APP_CONFIG = f"{web_node_config.APP_CONFIG_DIR}/config.json"


@dataclass(frozen=True)
class DatabaseSecrets:
    """Secrets Manager ARNs; each value is JSON {"username", "password"}."""

    admin: str
    replication: str
    app: str
    """The app's user: the secret the web nodes read."""


@dataclass(frozen=True)
class DatabaseHostConfig:
    """What `/etc/web-infra/database.json` tells `database_node.py`: no secret values."""

    role: str
    """`primary` or `replica`."""
    host_name: str
    server_id: int
    region: str
    database: str
    primary_host: str
    """The primary's name in the private zone (the replica replicates from it)."""
    volume_id: str
    secrets: DatabaseSecrets
    key_secret: str
    """The ARN of the secret holding this host's server key (PEM)."""
    backup_bucket: str
    retention_days: int
    metrics_namespace: str
    """The stack's CloudWatch namespace: the replica reports its replication there."""

    def __post_init__(self) -> None:
        if self.role not in ("primary", "replica"):
            raise ValueError(f"a database host is the primary or the replica, not {self.role!r}")

    def as_json(self) -> str:
        return (
            json.dumps(
                {
                    "role": self.role,
                    "host_name": self.host_name,
                    "server_id": self.server_id,
                    "region": self.region,
                    "database": self.database,
                    "primary_host": self.primary_host,
                    "volume_id": self.volume_id,
                    "mount": MOUNT,
                    "secrets": {
                        "admin": self.secrets.admin,
                        "replication": self.secrets.replication,
                        "app": self.secrets.app,
                    },
                    "tls": {
                        "ca_file": CA_FILE,
                        "cert_file": CERT_FILE,
                        "key_secret": self.key_secret,
                        "key_file": KEY_FILE,
                    },
                    "backup": {
                        "bucket": self.backup_bucket,
                        "prefix": BACKUP_PREFIX,
                        "retention_days": self.retention_days,
                    },
                    "metrics": {"namespace": self.metrics_namespace},
                    "max_connections": database_shape.MAX_CONNECTIONS,
                },
                indent=2,
            )
            + "\n"
        )


def _node_command(subcommand: str) -> list[str]:
    return ["python3", DATABASE_NODE, subcommand, "--config", CONFIG_FILE]


def database_host_cloud_config(
    config: DatabaseHostConfig,
    zone: str,
    readiness: cloud_config.ReadinessReport,
    *,
    ca_pem: str,
    cert_pem: str,
) -> dict[str, Any]:
    """The host's whole document: MariaDB from Ubuntu's packages, its config, the public CA and
    certificate, the script; it reports ready once `database_node.py check` passes."""
    report_script, report = readiness.steps(config.host_name, "unused")
    # Ready when the database serves (and, on the replica, replicates): a command, not a URL.
    at = report.index("--check-url")
    report[at : at + 2] = ["--check-command", " ".join(_node_command("check"))]
    document: dict[str, Any] = {
        "hostname": config.host_name,
        "fqdn": cloud_config.host_name(config.host_name, zone),
        "prefer_fqdn_over_hostname": False,
        "package_update": True,
        "package_upgrade": True,
        "packages": PACKAGES,
        "apt": {"conf": 'Acquire::Retries "5";\n'},
        "write_files": [
            _file(CONFIG_FILE, config.as_json(), "0640"),
            _file(CA_FILE, ca_pem, "0644"),
            _file(CERT_FILE, cert_pem, "0644"),
            cloud_config.compressed_file(DATABASE_NODE, DATABASE_NODE_SOURCE.read_bytes(), "0755"),
            report_script,
        ],
        "runcmd": [_node_command("install"), _node_command("bootstrap"), report],
    }
    return document


def _file(path: str, content: str, permissions: str) -> dict[str, Any]:
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content}


def render_database_host(
    config: DatabaseHostConfig,
    zone: str,
    readiness: cloud_config.ReadinessReport,
    store: ArtifactStore,
    *,
    ca_pem: str,
    cert_pem: str,
    metrics_agent: dict[str, Any] | None = None,
) -> tuple[str, list[ShippedFile]]:
    """The host's userdata (its script and report fetched from the artifacts bucket) and the
    files it fetches: the same files whatever the config and certificates say.

    `metrics_agent`: the CloudWatch agent's cloud-config fragment for this host
    (`cloudwatch_agent.cloud_config_fragment`), installed once the database serves."""
    document = database_host_cloud_config(config, zone, readiness, ca_pem=ca_pem, cert_pem=cert_pem)
    if metrics_agent is not None:
        document = cloud_config.report_ready_last(merge_fragment(document, metrics_agent))
    small, shipped = offload(document, store)
    return cloud_config.render(small), shipped


def with_database_ca(userdata: str, ca_pem: str) -> str:
    """A web node's userdata for the database hosts: the app verifies them with the stack's
    CA (`ca_pem`, public, inline) and no longer downloads RDS's bundle. Fails loudly when the
    web node's document no longer has what it replaces."""
    return cloud_config.render(app_trusts_database_ca(cloud_config.parse(userdata), ca_pem))


def app_trusts_database_ca(
    document: dict[str, Any], ca_pem: str, *, written_at: str | None = None
) -> dict[str, Any]:
    """`with_database_ca` on a web node's document. `written_at`: the document already writes
    the CA there (a web node running a database, `dbMode: colocated`) and the app reads that
    copy instead of one of its own."""
    document = dict(document)
    files = document["write_files"]
    kept = [f for f in files if f["path"] != f"/etc/systemd/system/{_RDS_CA_UNIT}"]
    (app_config,) = [f for f in kept if f["path"] == _APP_CONFIG]
    steps = document["runcmd"]
    download = ["systemctl", "start", _RDS_CA_UNIT]
    if len(kept) != len(files) - 1 or download not in steps:
        raise ValueError("the web node's document no longer downloads RDS's CA bundle here")
    if written_at is not None and not [f for f in kept if f["path"] == written_at]:
        raise ValueError(f"the web node's document writes no CA at {written_at}")
    config = json.loads(app_config["content"])
    config["database"]["tls_ca_file"] = written_at or WEB_CA_FILE
    app_config = {**app_config, "content": json.dumps(config, indent=2) + "\n"}
    kept = [app_config if f["path"] == _APP_CONFIG else f for f in kept]
    if written_at is None:
        at = kept.index(app_config)
        kept.insert(at + 1, _file(WEB_CA_FILE, ca_pem, "0644"))
    document["write_files"] = kept
    document["runcmd"] = [step for step in steps if step != download]
    return document
