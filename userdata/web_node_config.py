"""The cloud-config of a web node: Nginx in front of gunicorn running the app (the package
`userdata/web_app`, every module shipped to APP_PACKAGE_DIR), its config.json (where MySQL and
the app's secret are) and the RDS CA bundle, fetched at first boot.

Built from `cloud_config`'s parts, like the load balancer's (`load_balancer_config`). It changes
when what runs on a web node does: the app's files, gunicorn's or Nginx's settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settings.web_tier import APP_MAX_CONCURRENT_QUERIES, GUNICORN_WORKERS
from userdata.cloud_config import (
    HERE,
    MYSQL_PORT,
    WEB_PORT,
    ReadinessReport,
    base_document,
    file_entry,
    host_name,
    render_template,
)

APP_PACKAGE = HERE / "web_app"
APP_DIR = "/opt/web-app"
# Where the app's package goes: gunicorn imports it from APP_DIR (`web_app:application`).
APP_PACKAGE_DIR = f"{APP_DIR}/web_app"
APP_CONFIG_DIR = "/etc/web-app"
RDS_CA_BUNDLE = f"{APP_CONFIG_DIR}/rds-ca.pem"
RDS_CA_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_CA_ATTEMPT_SECONDS = 90  # the longest first boot waits for the bundle (then it retries)

# The app's runtime comes from Ubuntu, not pip: no PyPI at boot, security updates from apt.
WEB_NODE_PACKAGES = ["nginx", "gunicorn", "python3-pymysql", "python3-boto3", "curl"]


@dataclass(frozen=True)
class AppDatabase:
    """Where the app finds MySQL and its credentials; all known at preview."""

    zone: str
    database_name: str
    region: str
    secret_name: str
    """The app's own secret in Secrets Manager, {"username", "password"}: the stack's name
    for it, so it is known at preview (components/database_bootstrap.py)."""
    max_replica_lag_seconds: int = 3

    def app_config(self, node_name: str) -> dict[str, Any]:
        return {
            "node_name": node_name,
            "database": {
                "name": self.database_name,
                "primary_host": host_name("db-primary", self.zone),
                "replica_host": host_name("db-replica", self.zone),
                "port": MYSQL_PORT,
                # Short socket timeouts: a hung database fails a request in about a second.
                "connect_timeout_seconds": 1,
                "query_timeout_seconds": 1,
                "max_replica_lag_seconds": self.max_replica_lag_seconds,
                # Per server and worker; twice this stays below gunicorn's threads (12), so
                # some are always free for /health. The settings check the connections this
                # allows against the database class (settings.web_tier.database_connections_needed).
                "max_concurrent_queries": APP_MAX_CONCURRENT_QUERIES,
                "tls_ca_file": RDS_CA_BUNDLE,
            },
            # No password here: the app reads its own user's secret with its instance role
            # when it first needs it (it may not exist yet at boot), and again after MySQL
            # refuses the password, so userdata stays free of secrets and survives rotation.
            "credentials": {
                "source": "secrets-manager",
                "region": self.region,
                "secret_id": self.secret_name,
            },
        }


def app_files(folder: Path = APP_PACKAGE) -> dict[str, bytes]:
    """The app's modules by file name, in name order: every `*.py` of its package's folder
    (the repository's, or a release's copy of it)."""
    files = {path.name: path.read_bytes() for path in sorted(folder.glob("*.py"))}
    if "__init__.py" not in files:
        raise ValueError(f"{folder} holds no __init__.py; pass the app's package folder")
    return files


def gunicorn_config() -> str:
    text = render_template("gunicorn.conf.py")
    # The database's connection budget (settings.web_tier.database_connections_needed) counts these.
    if f"\nworkers = {GUNICORN_WORKERS}  " not in text:
        raise ValueError("gunicorn.conf.py must run settings.web_tier.GUNICORN_WORKERS workers")
    return text


def web_node_cloud_config(
    node_name: str,
    database: AppDatabase,
    readiness: ReadinessReport,
    *,
    load_balancer_cidr: str = "127.0.0.1/32",
    app: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Nginx in front of gunicorn running the app (`app`: its modules by file name, as
    `app_files` reads them; default: the repository's), for the web node `node_name`.

    Nginx believes X-Forwarded-For only from `load_balancer_cidr` (the VPC's range, where
    HAProxy lives); the default trusts no other host.
    """
    nginx = render_template(
        "nginx.conf", node_name=node_name, web_port=WEB_PORT, load_balancer_cidr=load_balancer_cidr
    )
    document = base_document(node_name, database.zone, WEB_NODE_PACKAGES)
    # Ready once the app answers its health check through Nginx, as HAProxy will ask it.
    report_script, report_ready = readiness.steps(node_name, f"http://127.0.0.1:{WEB_PORT}/health")
    modules = app_files() if app is None else app
    document["write_files"] = [
        *(file_entry(f"{APP_PACKAGE_DIR}/{n}", modules[n].decode()) for n in sorted(modules)),
        file_entry(
            f"{APP_CONFIG_DIR}/config.json",
            json.dumps(database.app_config(node_name), indent=2) + "\n",
        ),
        file_entry(f"{APP_CONFIG_DIR}/gunicorn.conf.py", gunicorn_config()),
        file_entry("/etc/systemd/system/web-app.service", render_template("web-app.service")),
        file_entry(
            "/etc/systemd/system/rds-ca-bundle.service",
            render_template(
                "rds-ca-bundle.service",
                bundle=RDS_CA_BUNDLE,
                url=RDS_CA_URL,
                attempt_seconds=RDS_CA_ATTEMPT_SECONDS,
            ),
        ),
        file_entry("/etc/nginx/nginx.conf", nginx, defer=True),
        report_script,
    ]
    document["runcmd"] = [
        ["systemctl", "daemon-reload"],
        # Bounded (RDS_CA_ATTEMPT_SECONDS); on failure systemd keeps retrying in the background.
        ["systemctl", "start", "rds-ca-bundle.service"],
        ["systemctl", "enable", "--now", "web-app.service"],
        ["nginx", "-t"],
        ["systemctl", "enable", "nginx"],
        ["systemctl", "restart", "nginx"],
        report_ready,
    ]
    return document
