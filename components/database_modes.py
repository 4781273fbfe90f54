"""The database tier in the variant `dbMode` asks for, each built from the slice of settings
it needs: `rds` (RDS and the bootstrap that creates the app's user), `ec2` (MariaDB on two
database hosts of the stack's own) and `colocated` (the same MariaDB on web-1 and web-2).

Every variant answers the `components.database.DatabaseTier` interface, so the top-level
component builds whichever one this returns without knowing which: a new mode is a new
function here and a class behind that interface, not a branch in `web_infrastructure`. The
MariaDB variants boot their hosts later, once the private zone holds their names
(`DatabaseTier.launch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.colocated_database import ColocatedDatabase
from components.database import Database, DatabaseArgs, DatabaseTier, RdsTier
from components.database_bootstrap import (
    DatabaseBootstrap,
    DatabaseBootstrapArgs,
    app_secret_name,
)
from components.database_hosts import (
    DatabaseHost,
    DatabaseHosts,
    DatabaseHostsArgs,
    UserdataRenderer,
)
from components.firewall import Firewall
from components.network import Network
from components.placement import Placement
from components.rendered_hosts import (
    APP_USERNAME,
    DATABASE_NAME,
    MASTER_USERNAME,
    REPLICATION_USERNAME,
    DatabaseHostResources,
    backup_bucket_name,
    colocated_web_userdata,
    database_host_resources,
    database_host_userdata,
    metrics_agent_policies,
    readiness_report,
)
from settings import Settings
from settings import colocated_database as colocated_shape
from settings import database_hosts as database_shape
from userdata import cloud_config, web_node_config
from userdata.metric_catalog import DATABASE
from userdata.shipping import ShippedFile


def database_tier(
    settings: Settings,
    where: Placement,
    network: Network,
    firewall: Firewall,
    opts: pulumi.ResourceOptions,
) -> DatabaseTier:
    """The database tier of `settings.db_mode`, its resources children of `opts`' parent."""
    modes = _Modes(settings, where, network, firewall, opts)
    if settings.db_mode == "ec2":
        return modes.database_hosts()
    if settings.db_mode == "colocated":
        return modes.colocated_database()
    return modes.rds()


_HostRenderer = Callable[
    [Settings, str, str, DatabaseHostResources, str], tuple[str, list[ShippedFile]]
]
"""`rendered_hosts.database_host_userdata` or `colocated_web_userdata`."""


@dataclass(frozen=True)
class _Modes:
    """What every variant is built from: the settings, the placement, the tiers below it."""

    settings: Settings
    where: Placement
    network: Network
    firewall: Firewall
    opts: pulumi.ResourceOptions

    @property
    def _prefix(self) -> str:
        return self.settings.name_prefix

    def rds(self) -> RdsTier:
        settings = self.settings
        database = Database(
            f"{self._prefix}-database",
            DatabaseArgs(
                primary_identifier=settings.db_primary_identifier,
                replica_identifier=settings.db_replica_identifier,
                database_name=DATABASE_NAME,
                master_username=MASTER_USERNAME,
                instance_class=settings.db_instance_class,
                allocated_storage_gb=settings.db_allocated_storage_gb,
                max_allocated_storage_gb=settings.db_max_allocated_storage_gb,
                apply_immediately=settings.db_apply_immediately,
                backup_retention_days=settings.db_backup_retention_days,
                multi_az=settings.db_multi_az,
                deletion_protection=settings.deletion_protection,
                subnet_ids=[s.id for s in self.network.private_subnets],
                security_group_id=self.firewall.database_group_id,
            ),
            opts=self.opts,
        )
        return RdsTier(database, self._database_bootstrap(database))

    def _database_bootstrap(self, database: Database) -> DatabaseBootstrap:
        """The app's own user and secret; only the bootstrap reads the master secret."""
        group = self.firewall.database_bootstrap_group_id
        if group is None:
            raise AssertionError("RDS's bootstrap needs its security group")
        return DatabaseBootstrap(
            f"{self._prefix}-database-bootstrap",
            DatabaseBootstrapArgs(
                name_prefix=self._prefix,
                secret_name=app_secret_name(self._prefix),
                app_username=APP_USERNAME,
                database_name=DATABASE_NAME,
                primary_address=database.primary_address,
                port=cloud_config.MYSQL_PORT,
                master_secret_arn=database.master_secret_arn,
                subnet_ids=[s.id for s in self.network.private_subnets],
                security_group_id=group,
                ca_bundle_url=web_node_config.RDS_CA_URL,
                log_retention_days=self.settings.log_retention_days,
                run_after=[self.network, self.firewall],
            ),
            opts=self.opts,
        )

    def database_hosts(self) -> DatabaseHosts:
        """`dbMode: ec2`: the hosts' secrets, certificates, volumes and backups; the hosts
        themselves boot in `DatabaseTier.launch`, once the private zone exists."""
        return DatabaseHosts(
            f"{self._prefix}-database-hosts",
            self._mariadb_args(
                database_shape.HOSTS,
                database_shape.ROLES,
                instance_type=self.settings.db_instance_type,
                security_group_id=self.firewall.database_group_id,
                render_userdata=self._renderer(database_host_userdata),
                metrics_agent_policy=self._agent_policy(DATABASE),
            ),
            opts=self.opts,
        )

    def colocated_database(self) -> ColocatedDatabase:
        """`dbMode: colocated`: the same database on web-1 and web-2, which the web tier boots
        with what `DatabaseTier.launch` makes for them."""
        return ColocatedDatabase(
            f"{self._prefix}-colocated-database",
            self._mariadb_args(
                colocated_shape.HOSTS,
                colocated_shape.ROLES,
                instance_type=self.settings.instance_type,
                security_group_id=self.firewall.web_group_id,
                render_userdata=self._renderer(colocated_web_userdata),
                # The web nodes' own agent runs on web-1 and web-2; their roles hold its policy.
                metrics_agent_policy=self._agent_policy("web"),
            ),
            opts=self.opts,
        )

    def _renderer(self, render: _HostRenderer) -> UserdataRenderer:
        """A host's userdata from what AWS and pulumi-tls made for it, by `render` (pure)."""
        settings, where = self.settings, self.where

        def render_userdata(host: str, **made: Any) -> str:
            resources = database_host_resources(**made)
            return render(settings, where.region, where.account_id, resources, host)[0]

        return render_userdata

    def _agent_policy(self, role: str) -> str:
        """The metrics agent's policy of the role whose agent runs on the database's hosts."""
        return metrics_agent_policies(self.settings, self.where.region, self.where.account_id)[role]

    def _mariadb_args(
        self,
        names: Sequence[str],
        roles: Mapping[str, str],
        *,
        instance_type: str,
        security_group_id: pulumi.Input[str],
        render_userdata: UserdataRenderer,
        metrics_agent_policy: str,
    ) -> DatabaseHostsArgs:
        """The MariaDB primary and replica on `names`: the first in the first zone's private
        subnet, the second in the second's, each at the fixed address reserved there."""
        settings, where = self.settings, self.where
        subnets = self.network.private_subnets
        readiness = readiness_report(settings, where.region)
        return DatabaseHostsArgs(
            name_prefix=self._prefix,
            hosts=[
                DatabaseHost(
                    name=host,
                    role=roles[host],
                    subnet_id=subnets[i].id,
                    availability_zone=where.zones[i],
                    private_ip=database_shape.fixed_private_ip(settings.vpc_cidr, i),
                    reserved_cidr=database_shape.reserved_cidr(settings.vpc_cidr, i),
                    ready_parameter=readiness.parameter(host),
                )
                for i, host in enumerate(names)
            ],
            instance_type=instance_type,
            data_volume_gb=settings.db_allocated_storage_gb,
            security_group_id=security_group_id,
            zone_name=settings.internal_zone,
            usernames={
                "admin": MASTER_USERNAME,
                "replication": REPLICATION_USERNAME,
                "app": APP_USERNAME,
            },
            app_secret_name=app_secret_name(self._prefix),
            backup_bucket_name=backup_bucket_name(settings, where.account_id, where.region),
            backup_retention_days=settings.db_backup_retention_days,
            render_userdata=render_userdata,
            metrics_agent_policy=metrics_agent_policy,
        )
