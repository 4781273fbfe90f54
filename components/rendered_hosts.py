"""Every host's userdata and the files it fetches from S3, rendered by pure functions.

The program (`web_infrastructure.WebInfrastructure`) and the labs read the same documents:
`render_hosts` builds them from the stack's settings, the region and the account, with no
Pulumi runtime and no AWS call, so they are known at preview and the lab boots exactly what a
deployed host would. Each tier's document comes from `userdata/load_balancer_config.py` or
`userdata/web_node_config.py`; here it gets the metrics agent (from the same catalogue as the
alarms), and the big files move to the artifacts bucket (`userdata/shipping.py`), each object
once however many hosts install it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.artifacts import bucket_name
from components.database_bootstrap import app_secret_name
from settings import Settings
from settings.colocated_database import HOSTS as COLOCATED_HOSTS
from settings.colocated_database import ROLES as COLOCATED_ROLES
from settings.colocated_database import server_id as colocated_server_id
from settings.database_hosts import HOSTS as DATABASE_HOSTS
from settings.database_hosts import ROLES as DATABASE_ROLES
from settings.database_hosts import server_id
from settings.load_balancers import peer_of
from settings.web_tier import MAX_WEB_NODES, web_node_names
from userdata import cloud_config, load_balancer_config, web_node_config
from userdata.cloudwatch_agent import (
    agent_policy,
    cloud_config_fragment,
    merge_fragment,
    metrics_only_policy,
)
from userdata.colocated_web_node import with_database
from userdata.database_host import (
    CA_FILE,
    DatabaseHostConfig,
    DatabaseSecrets,
    app_trusts_database_ca,
    database_host_cloud_config,
    render_database_host,
)
from userdata.metric_catalog import (
    DATABASE,
    LOAD_BALANCER,
    Catalogue,
    StackShape,
    catalogue,
    log_sources,
)
from userdata.shipping import ArtifactStore, PublishedFile, ShippedFile, offload, publish

DATABASE_NAME = "webapp"
MASTER_USERNAME = "webapp_admin"
APP_USERNAME = "webapp_app"  # the app's own user: DML on its tables (app_db_user.GRANTS)
REPLICATION_USERNAME = "webapp_replication"  # dbMode ec2: the replica's user on the primary
PRIMARY_ALIAS = "db-primary"
"""The app's name for the primary (and, with `dbMode: colocated`, the replica's)."""


def readiness_report(settings: Settings, region: str) -> cloud_config.ReadinessReport:
    return cloud_config.ReadinessReport(settings.readiness_parameter_prefix, region)


def site_tls(settings: Settings, region: str) -> load_balancer_config.SiteTls:
    """HTTPS at the load balancer, as the settings ask for it; with a domain, the load balancers
    share the certificate in the stack's secret."""
    return load_balancer_config.SiteTls(
        domain=settings.domain,
        acme_email=settings.acme_email,
        acme_directory_url=settings.acme_directory_url,
        hsts_max_age_seconds=settings.hsts_max_age_seconds if settings.hsts else None,
        secret_id=settings.certificate_secret if settings.domain else "",
        region=region,
    )


def stack_shape(settings: Settings, region: str) -> StackShape:
    """What the metric catalogue (alarms, dashboard, the agent's config) needs of the stack."""
    return StackShape(
        name_prefix=settings.name_prefix,
        region=region,
        web_nodes=tuple(settings.web_node_names),
        db_primary=settings.db_primary_identifier,
        db_replica=settings.db_replica_identifier,
        db_instance_class=settings.db_instance_class,
        db_allocated_storage_gb=settings.db_allocated_storage_gb,
        db_on_rds=settings.db_mode == "rds",
        load_balancers=tuple(settings.load_balancer_names),
        database_hosts=_database_hosts(settings),
    )


def _database_hosts(settings: Settings) -> tuple[str, ...]:
    """The hosts that run the stack's own MariaDB, the primary's first: their data volume and
    the replica's replication are watched wherever they run (with `colocated`, on web-1 and
    web-2, whose instance alarms are the web nodes' already)."""
    if settings.db_mode == "ec2":
        return DATABASE_HOSTS
    if settings.db_mode == "colocated":
        return COLOCATED_HOSTS
    return ()


@dataclass(frozen=True)
class RenderedHosts:
    load_balancers: dict[str, str]
    """Each load balancer's userdata, by host name (`load-balancer-1`, `load-balancer-2`)."""
    web: dict[str, str]
    """Each web node's userdata, by node name."""
    files: list[PublishedFile]
    """What the userdata fetches from the artifacts bucket (each object once)."""
    store: ArtifactStore


def load_balancer_documents(settings: Settings, region: str) -> dict[str, dict[str, Any]]:
    """Each load balancer's cloud-config, by host name: HAProxy names the web nodes in the
    private zone, never addresses; in a pair, keepalived names the peer the same way."""
    names = settings.load_balancer_names
    return {
        host: load_balancer_config.load_balancer_cloud_config(
            host,
            settings.internal_zone,
            readiness_report(settings, region),
            site_tls(settings, region),
            pair=load_balancer_config.LoadBalancerPair(
                peer=peer,
                first=host == names[0],
                address_parameter=settings.address_parameter,
                region=region,
                namespace=stack_shape(settings, region).namespace,
            )
            if (peer := peer_of(host, names))
            else None,
        )
        for host in names
    }


def web_node_documents(
    settings: Settings, region: str, *, app: Mapping[str, bytes] | None = None
) -> dict[str, dict[str, Any]]:
    """Each web node's cloud-config (Nginx, gunicorn, the app), by node name."""
    database = web_node_config.AppDatabase(
        zone=settings.internal_zone,
        database_name=DATABASE_NAME,
        region=region,
        secret_name=app_secret_name(settings.name_prefix),
        max_replica_lag_seconds=settings.db_max_replica_lag_seconds,
    )
    readiness = readiness_report(settings, region)
    return {
        node: web_node_config.web_node_cloud_config(
            node,
            database,
            readiness,
            load_balancer_cidr=settings.vpc_cidr,
            app=app,
        )
        for node in settings.web_node_names
    }


def render_hosts(
    settings: Settings, region: str, account_id: str, *, app: Mapping[str, bytes] | None = None
) -> RenderedHosts:
    """Every host's userdata and the files it fetches; pure and known at preview.

    `app` (the app's modules by file name) replaces the repository's app (the lab rolls out
    a release with it).
    """
    store = ArtifactStore(bucket_name(settings.name_prefix, account_id, region), region)
    shape = stack_shape(settings, region)
    metrics = {node: catalogue(shape) for node in settings.web_node_names}
    # HAProxy has a slot for every possible node, and so has its metrics agent: the load
    # balancer's files must not change with webNodeCount (only the alarms do). HAProxy's series
    # have one publisher (`load-balancer`): both of a pair publish them, and the alarms read
    # them together; each of a pair publishes its own memory and disk under its own name.
    every_slot = catalogue(
        dataclasses.replace(shape, web_nodes=tuple(web_node_names(MAX_WEB_NODES)))
    )
    metrics |= dict.fromkeys((LOAD_BALANCER, *shape.pair), every_slot)
    load_balancers = load_balancer_documents(settings, region)
    documents = {**load_balancers, **web_node_documents(settings, region, app=app)}
    userdata, shipped = {}, {}
    for host, document in documents.items():
        publisher = host if host in shape.pair or host not in load_balancers else LOAD_BALANCER
        small, shipped[host] = offload(with_agent(document, metrics[publisher], publisher), store)
        userdata[host] = cloud_config.render(small)
    # Their userdata waits for AWS (the volumes, the secrets, the certificates); the files they
    # fetch do not.
    if settings.db_mode == "ec2":
        for host in DATABASE_HOSTS:
            shipped[host] = database_host_userdata(
                settings, region, account_id, DatabaseHostResources.unknown(), host
            )[1]
    if settings.db_mode == "colocated":
        for host in COLOCATED_HOSTS:
            shipped[host] = colocated_web_userdata(
                settings, region, account_id, DatabaseHostResources.unknown(), host, app=app
            )[1]
    return RenderedHosts(
        {host: userdata.pop(host) for host in load_balancers}, userdata, publish(shipped), store
    )


def with_agent(document: dict[str, Any], metrics: Catalogue, publisher: str) -> dict[str, Any]:
    """`document` with the metrics agent, its config built from the same catalogue as the
    alarms, and its readiness report still last."""
    region = metrics.shape.region
    return cloud_config.report_ready_last(
        merge_fragment(document, cloud_config_fragment(metrics, publisher, region))
    )


def userdata_for(
    settings: Settings, region: str, account_id: str, *, app: Mapping[str, bytes] | None = None
) -> tuple[str, dict[str, str]]:
    """The first load balancer's and each web node's rendered userdata; pure, known at preview.
    (The pair's second load balancer differs from the first only in its name and its peer.)"""
    hosts = render_hosts(settings, region, account_id, app=app)
    return next(iter(hosts.load_balancers.values())), hosts.web


def metrics_agent_policies(settings: Settings, region: str, account_id: str) -> dict[str, str]:
    """Each role's IAM policy for its metrics agent: its namespace and its own log groups (the
    database hosts ship no log: their namespace only)."""
    namespace = stack_shape(settings, region).namespace
    policies = {
        role: agent_policy(
            namespace,
            [
                f"arn:aws:logs:{region}:{account_id}:log-group:"
                f"{source.group_name(settings.name_prefix)}"
                for source in log_sources(role)
            ],
        )
        for role in ("load-balancer", "web")
    }
    return {**policies, DATABASE: metrics_only_policy(namespace)}


def backup_bucket_name(settings: Settings, account_id: str, region: str) -> str:
    """The database hosts' backup bucket (`dbMode: ec2`), named like the artifacts bucket."""
    return bucket_name(settings.name_prefix, account_id, region).removesuffix("-artifacts") + (
        "-backups"
    )


@dataclass(frozen=True)
class DatabaseHostResources:
    """What AWS and pulumi-tls make for a database host, which its userdata names."""

    volume_id: str
    secrets: DatabaseSecrets
    key_secret: str
    ca_pem: str
    cert_pem: str

    @classmethod
    def unknown(cls) -> DatabaseHostResources:
        return cls("", DatabaseSecrets("", "", ""), "", "", "")


def database_host_resources(
    *, volume_id: str, secrets: dict[str, str], key_secret: str, ca_pem: str, cert_pem: str
) -> DatabaseHostResources:
    """What `components.database_hosts.UserdataRenderer` is given, as the renderers take it."""
    return DatabaseHostResources(
        volume_id, DatabaseSecrets(**secrets), key_secret, ca_pem, cert_pem
    )


def _database_config(
    settings: Settings,
    region: str,
    account_id: str,
    made: DatabaseHostResources,
    host: DatabaseHostShape,
) -> DatabaseHostConfig:
    return DatabaseHostConfig(
        role=host.role,
        host_name=host.name,
        server_id=host.server_id,
        region=region,
        database=DATABASE_NAME,
        primary_host=cloud_config.host_name(host.primary, settings.internal_zone),
        volume_id=made.volume_id,
        secrets=made.secrets,
        key_secret=made.key_secret,
        backup_bucket=backup_bucket_name(settings, account_id, region),
        retention_days=settings.db_backup_retention_days,
        metrics_namespace=stack_shape(settings, region).namespace,
    )


@dataclass(frozen=True)
class DatabaseHostShape:
    """Where a host of the database sits in its mode's layout."""

    name: str
    role: str
    server_id: int
    primary: str
    """The name the replica replicates from (a label in the private zone)."""


def database_host_userdata(
    settings: Settings,
    region: str,
    account_id: str,
    made: DatabaseHostResources,
    host: str,
) -> tuple[str, list[ShippedFile]]:
    """A database host's userdata (`dbMode: ec2`) and the files it fetches; pure."""
    place = DatabaseHostShape(host, DATABASE_ROLES[host], server_id(host), DATABASE_HOSTS[0])
    return render_database_host(
        _database_config(settings, region, account_id, made, place),
        settings.internal_zone,
        readiness_report(settings, region),
        ArtifactStore(bucket_name(settings.name_prefix, account_id, region), region),
        ca_pem=made.ca_pem,
        cert_pem=made.cert_pem,
        metrics_agent=cloud_config_fragment(catalogue(stack_shape(settings, region)), host, region),
    )


def colocated_web_userdata(
    settings: Settings,
    region: str,
    account_id: str,
    made: DatabaseHostResources,
    node: str,
    *,
    app: Mapping[str, bytes] | None = None,
) -> tuple[str, list[ShippedFile]]:
    """web-1's or web-2's userdata with `dbMode: colocated` (the web node's, running the
    primary or the replica too) and the files it fetches; pure. The replica replicates from
    `db-primary`, which names web-1 before either boots; the app verifies both databases with
    the stack's CA."""
    shape = DatabaseHostShape(node, COLOCATED_ROLES[node], colocated_server_id(node), PRIMARY_ALIAS)
    database = database_host_cloud_config(
        _database_config(settings, region, account_id, made, shape),
        settings.internal_zone,
        readiness_report(settings, region),
        ca_pem=made.ca_pem,
        cert_pem=made.cert_pem,
    )
    web = web_node_documents(settings, region, app=app)[node]
    metrics = catalogue(stack_shape(settings, region))
    document = with_database(with_agent(web, metrics, node), database)
    # One copy of the CA on the node: MariaDB's, which the app reads too.
    document = app_trusts_database_ca(document, made.ca_pem, written_at=CA_FILE)
    store = ArtifactStore(bucket_name(settings.name_prefix, account_id, region), region)
    small, shipped = offload(document, store)
    return cloud_config.render(small), shipped
