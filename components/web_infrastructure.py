"""The whole architecture as one component: network, firewall, database, web tier, load balancer.

Build order follows the data: the network and firewall first; the database tier and the app's
database secret next (the web tier's role names that secret, which does not wait for the
database); then the web nodes and HAProxy, whose userdata only names hosts in the private zone,
each behind a readiness gate; last, the zone's records, which point those names at the addresses
of hosts that serve. The database tier is a variant chosen by `dbMode` (`components.database`):
RDS and the bootstrap function that creates the app's user, or database hosts of the stack's
own, which boot once the private zone holds their names.

The constructor is that sequence and nothing else: each step is a method with one job that
takes the slice of settings its tier needs into the tier's typed args (a new mode of a tier is a
variant in that tier's module, not a branch here). Every host's userdata comes from the pure
`components.rendered_hosts`, which the labs read too.

What `pulumi up` waits for: every new host's readiness gate (it serves), every DNS switch to
be followed by HAProxy, and only then are the hosts it replaced deleted. So a green `pulumi up`
means the stack serves, and a change never routes a request to a host that does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.artifacts import Artifacts, ArtifactsArgs
from components.colocated_database import ColocatedDatabase
from components.database import Database, DatabaseArgs, DatabaseLaunch, DatabaseTier, RdsTier
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
from components.firewall import Firewall, FirewallArgs
from components.hardened_instance import ubuntu_ami
from components.internal_dns import HostRecords, InternalDns, InternalDnsArgs
from components.load_balancer import LoadBalancer, LoadBalancerArgs, LoadBalancerHost
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.readiness_gate import GateSettings
from components.rendered_hosts import (
    APP_USERNAME,
    DATABASE_NAME,
    MASTER_USERNAME,
    REPLICATION_USERNAME,
    RenderedHosts,
    backup_bucket_name,
    colocated_web_userdata,
    database_host_resources,
    database_host_userdata,
    metrics_agent_policies,
    readiness_report,
    render_hosts,
)
from components.site_record import SiteRecord, SiteRecordArgs
from components.stack_outputs import STACK_OUTPUTS
from components.web_tier import WebNode, WebTier, WebTierArgs
from settings import AwsProviderSettings, Settings
from settings import colocated_database as colocated_shape
from settings import database_hosts as database_shape
from settings.instance_types import cpu_architecture
from settings.load_balancers import PAIR, fixed_private_ip
from userdata import cloud_config, web_node_config
from userdata.metric_catalog import DATABASE


class WebInfrastructure(pulumi.ComponentResource):
    """The architecture's tiers, each a component of its own; built in the diagram's order."""

    network: Network
    firewall: Firewall
    database: DatabaseTier
    web: WebTier
    load_balancer: LoadBalancer
    outputs: dict[str, pulumi.Output[object]]

    def __init__(
        self,
        name: str,
        settings: Settings,
        aws_settings: AwsProviderSettings,
        opts: pulumi.ResourceOptions | None = None,
        *,
        us_east_1: pulumi.ProviderResource | None = None,
    ) -> None:
        """`us_east_1`: a provider for us-east-1, where Route 53 publishes the outside-in
        health check's metrics (needed unless the stack is there)."""
        super().__init__("web-infra:web_infrastructure:WebInfrastructure", name, None, opts)
        self._prefix = settings.name_prefix
        self._child = pulumi.ResourceOptions(parent=self)
        where = Placement.look_up(self)

        self.network = self._network(settings, where)
        self.firewall = self._firewall(settings)
        self.database = self._database(settings, where)
        hosts = self._hosts(settings, aws_settings, where)
        dns = self._internal_dns(settings)
        self._launch_database(hosts, dns)
        self.web = self._web_tier(settings, hosts)
        self._host_records(settings, dns)
        self.load_balancer = self._load_balancer(settings, hosts, where, dns)
        self._site_record(settings)
        monitoring = self._monitoring(settings, where, us_east_1)

        self.outputs = self._outputs(settings, monitoring)
        self.register_outputs(self.outputs)

    def _network(self, settings: Settings, where: Placement) -> Network:
        return Network(
            f"{self._prefix}-network",
            NetworkArgs(
                vpc_cidr=settings.vpc_cidr,
                availability_zones=where.zones,
                nat_gateway_per_az=settings.nat_gateways == "perAz",
                region=where.region,
            ),
            opts=self._child,
        )

    def _firewall(self, settings: Settings) -> Firewall:
        return Firewall(
            f"{self._prefix}-firewall",
            FirewallArgs(
                vpc_id=self.network.vpc_id,
                public_ports=(cloud_config.HTTP_PORT, 443),
                web_port=cloud_config.WEB_PORT,
                database_port=cloud_config.MYSQL_PORT,
                vrrp=settings.load_balancer_count == PAIR,
                database_hosts=settings.db_mode == "ec2",
                database_on_web_nodes=settings.db_mode == "colocated",
            ),
            opts=self._child,
        )

    def _database(self, settings: Settings, where: Placement) -> DatabaseTier:
        """The database tier in the variant `dbMode` asks for."""
        if settings.db_mode == "ec2":
            return self._database_hosts(settings, where)
        if settings.db_mode == "colocated":
            return self._colocated_database(settings, where)
        database = self._rds(settings)
        return RdsTier(database, self._database_bootstrap(settings, database))

    def _rds(self, settings: Settings) -> Database:
        return Database(
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
            opts=self._child,
        )

    def _database_bootstrap(self, settings: Settings, database: Database) -> DatabaseBootstrap:
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
                log_retention_days=settings.log_retention_days,
                run_after=[self.network, self.firewall],
            ),
            opts=self._child,
        )

    def _database_hosts(self, settings: Settings, where: Placement) -> DatabaseHosts:
        """`dbMode: ec2`: the hosts' secrets, certificates, volumes and backups; the hosts
        themselves boot in `_launch_database`, once the private zone exists."""

        def render_userdata(host: str, **made: Any) -> str:
            resources = database_host_resources(**made)
            return database_host_userdata(
                settings, where.region, where.account_id, resources, host
            )[0]

        return DatabaseHosts(
            f"{self._prefix}-database-hosts",
            self._mariadb_args(
                settings,
                where,
                database_shape.HOSTS,
                database_shape.ROLES,
                instance_type=settings.db_instance_type,
                security_group_id=self.firewall.database_group_id,
                render_userdata=render_userdata,
                metrics_agent_policy=metrics_agent_policies(
                    settings, where.region, where.account_id
                )[DATABASE],
            ),
            opts=self._child,
        )

    def _colocated_database(self, settings: Settings, where: Placement) -> ColocatedDatabase:
        """`dbMode: colocated`: the same database on web-1 and web-2, which the web tier boots
        with what `_launch_database` makes for them."""

        def render_userdata(host: str, **made: Any) -> str:
            resources = database_host_resources(**made)
            return colocated_web_userdata(
                settings, where.region, where.account_id, resources, host
            )[0]

        return ColocatedDatabase(
            f"{self._prefix}-colocated-database",
            self._mariadb_args(
                settings,
                where,
                colocated_shape.HOSTS,
                colocated_shape.ROLES,
                instance_type=settings.instance_type,
                security_group_id=self.firewall.web_group_id,
                render_userdata=render_userdata,
                # The web nodes' own agent runs on web-1 and web-2; their roles hold its policy.
                metrics_agent_policy=metrics_agent_policies(
                    settings, where.region, where.account_id
                )["web"],
            ),
            opts=self._child,
        )

    def _mariadb_args(
        self,
        settings: Settings,
        where: Placement,
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

    def _launch_database(self, hosts: Hosts, dns: InternalDns) -> None:
        """The database tier's own hosts, if it has any, named in the private zone."""
        self.database.launch(
            DatabaseLaunch(
                ami=hosts.ami,
                artifacts_arn=hosts.artifacts.files_arn,
                gates=hosts.gates,
                boot_needs=hosts.boot_needs,
                zone_id=dns.zone_id,
            )
        )

    def _hosts(
        self, settings: Settings, aws_settings: AwsProviderSettings, where: Placement
    ) -> Hosts:
        """Every host's userdata (pure, `rendered_hosts`), the bucket of the files it fetches,
        the readiness gates' settings and the AMIs."""
        prefix = settings.name_prefix
        rendered = render_hosts(settings, where.region, where.account_id)
        artifacts = Artifacts(
            f"{prefix}-artifacts",
            ArtifactsArgs(bucket_name=rendered.store.bucket, files=tuple(rendered.files)),
            opts=self._child,
        )
        gates = GateSettings.read(
            region=where.region,
            profile=aws_settings.profile,
            timeout_seconds=settings.readiness_timeout_minutes * 60,
            readiness_prefix=settings.readiness_parameter_prefix,
            parent=self,
        )
        images: dict[str, str] = {}

        def ami(instance_type: str) -> str:
            architecture = cpu_architecture(instance_type)
            if architecture not in images:
                images[architecture] = settings.ami_ids.get(architecture) or ubuntu_ami(
                    architecture, self
                )
            return images[architecture]

        return Hosts(
            rendered=rendered,
            readiness=readiness_report(settings, where.region),
            artifacts=artifacts,
            gates=gates,
            agent_policies=metrics_agent_policies(settings, where.region, where.account_id),
            # Instances boot into apt and fetch the app: they wait for the NAT routes, the egress
            # rules and the artifacts. Nothing else does (the IAM roles are created meanwhile).
            # And a database host's fixed address is reserved before any other host launches.
            boot_needs=[self.network, self.firewall, artifacts, *self.database.boot_before],
            ami=ami,
        )

    def _web_tier(self, settings: Settings, hosts: Hosts) -> WebTier:
        subnets = self.network.private_subnets
        return WebTier(
            f"{self._prefix}-web",
            WebTierArgs(
                name_prefix=self._prefix,
                ami=hosts.ami(settings.instance_type),
                instance_type=settings.instance_type,
                nodes=[
                    WebNode(
                        name=node,
                        # Round the zones: web-1 in the first, web-2 in the second, ...
                        subnet_id=subnets[i % len(subnets)].id,
                        user_data=self.database.web_user_data(node, hosts.rendered.web[node]),
                        ready_parameter=hosts.readiness.parameter(node),
                        database=self.database.web_node_database(node),
                    )
                    for i, node in enumerate(settings.web_node_names)
                ],
                batches=settings.rollout_batches,
                security_group_id=self.firewall.web_group_id,
                app_secret_arn=self.database.app_secret_arn,
                artifacts_arn=hosts.artifacts.files_arn,
                metrics_agent_policy=hosts.agent_policies["web"],
                gates=hosts.gates,
                instance_depends_on=hosts.boot_needs,
            ),
            opts=self._child,
        )

    def _internal_dns(self, settings: Settings) -> InternalDns:
        """The private zone; the hosts' records follow once they exist (`_host_records`)."""
        return InternalDns(
            f"{self._prefix}-dns",
            InternalDnsArgs(zone_name=settings.internal_zone, vpc_id=self.network.vpc_id),
            opts=self._child,
        )

    def _host_records(self, settings: Settings, dns: InternalDns) -> None:
        """The web nodes' and databases' names (the load balancers add their own)."""
        dns.add_records(
            HostRecords(
                # Addresses from the readiness gates: a name points at a host once it serves.
                a_records={node: gate.private_ip for node, gate in self.web.gates.items()},
                followed_by_haproxy=settings.web_node_names,
                cname_records=self.database.aliases,
            )
        )

    def _load_balancer(
        self, settings: Settings, hosts: Hosts, where: Placement, dns: InternalDns
    ) -> LoadBalancer:
        subnets = self.network.public_subnets
        pair = settings.load_balancer_count == PAIR
        return LoadBalancer(
            f"{self._prefix}-load-balancer",
            LoadBalancerArgs(
                name_prefix=self._prefix,
                ami=hosts.ami(settings.load_balancer_instance_type),
                instance_type=settings.load_balancer_instance_type,
                hosts=[
                    LoadBalancerHost(
                        name=host,
                        # One per zone: load-balancer-1 in the first, -2 in the second.
                        subnet_id=subnets[i].id,
                        user_data=hosts.rendered.load_balancers[host],
                        ready_parameter=hosts.readiness.parameter(host),
                        private_ip=fixed_private_ip(settings.vpc_cidr, i) if pair else None,
                    )
                    for i, host in enumerate(settings.load_balancer_names)
                ],
                security_group_id=self.firewall.load_balancer_group_id,
                artifacts_arn=hosts.artifacts.files_arn,
                metrics_agent_policy=hosts.agent_policies["load-balancer"],
                gates=hosts.gates,
                instance_depends_on=hosts.boot_needs,
                zone_id=dns.zone_id,
                zone_name=settings.internal_zone,
                address_parameter=settings.address_parameter,
                region=where.region,
                account_id=where.account_id,
                certificate_secret=settings.certificate_secret if settings.domain else None,
            ),
            opts=self._child,
        )

    def _site_record(self, settings: Settings) -> SiteRecord | None:
        """The site's public record, when the stack has a domain in a zone it may write to."""
        if not (settings.domain and settings.public_zone_id):
            return None
        return SiteRecord(
            f"{self._prefix}-site-record",
            SiteRecordArgs(
                zone_id=settings.public_zone_id,
                domain=settings.domain,
                public_ip=self.load_balancer.public_ip,
            ),
            opts=self._child,
        )

    def _monitoring(
        self,
        settings: Settings,
        where: Placement,
        us_east_1: pulumi.ProviderResource | None,
    ) -> Monitoring:
        return Monitoring(
            f"{self._prefix}-monitoring",
            MonitoringArgs(
                name_prefix=self._prefix,
                region=where.region,
                # With a domain, HTTP answers a redirect: check what users get, HTTPS on it.
                public_host=settings.domain or self.load_balancer.public_dns,
                https=settings.domain is not None,
                web_instance_ids={node: gate.instance_id for node, gate in self.web.gates.items()},
                load_balancer_instance_id=self.load_balancer.instance_ids[
                    settings.load_balancer_names[0]
                ],
                load_balancer_names=settings.load_balancer_names,
                # A pair: each host's instance alarms watch it.
                load_balancer_instance_ids=(
                    self.load_balancer.instance_ids if len(settings.load_balancer_names) > 1 else {}
                ),
                db_primary_identifier=settings.db_primary_identifier,
                db_replica_identifier=settings.db_replica_identifier,
                databases=list(self.database.resources),
                rds_events=settings.db_mode == "rds",
                database_host_instance_ids=self._database_instance_ids(settings),
                db_instance_class=settings.db_instance_class,
                db_allocated_storage_gb=settings.db_allocated_storage_gb,
                alarm_email=settings.alarm_email,
                log_retention_days=settings.log_retention_days,
                health_check_provider=us_east_1,
            ),
            opts=self._child,
        )

    def _database_instance_ids(self, settings: Settings) -> dict[str, pulumi.Input[str]]:
        """The instances that run the stack's own MariaDB, by host name, the primary's first:
        the database hosts (`ec2`; each gets its instance alarms too), or web-1 and web-2
        (`colocated`; their instance alarms are the web nodes'). Their data volumes and the
        replica's replication are watched on them. None with RDS."""
        if settings.db_mode == "colocated":
            return {node: self.web.gates[node].instance_id for node in colocated_shape.HOSTS}
        if isinstance(self.database, DatabaseHosts):
            return {host: gate.instance_id for host, gate in self.database.gates.items()}
        return {}

    def _outputs(
        self, settings: Settings, monitoring: Monitoring
    ) -> dict[str, pulumi.Output[object]]:
        """The stack's outputs: exactly the keys of `STACK_OUTPUTS`, the contract consumers read."""
        https_url = (
            pulumi.Output.from_input(f"https://{settings.domain}")
            if settings.domain
            else self.load_balancer.public_dns.apply(lambda dns: f"https://{dns}")
        )
        outputs = {
            "url": https_url
            if settings.domain
            else self.load_balancer.public_dns.apply(lambda dns: f"http://{dns}"),
            "https_enabled": pulumi.Output.from_input(settings.domain is not None),
            "https_url": https_url,
            "load_balancer_public_ip": self.load_balancer.public_ip,
            "load_balancer_public_dns": self.load_balancer.public_dns,
            "web_private_ips": self.web.private_ips,
            "db_primary_endpoint": self.database.primary_endpoint,
            "db_replica_endpoint": self.database.replica_endpoint,
            "vpc_id": self.network.vpc_id,
            "public_subnet_ids": self.network.public_subnet_ids,
            "private_subnet_ids": self.network.private_subnet_ids,
            "security_group_ids": pulumi.Output.all(
                load_balancer=self.firewall.load_balancer_group_id,
                web=self.firewall.web_group_id,
                database=self.firewall.database_group_id,
            ),
            "alarm_topic_arn": monitoring.alarm_topic_arn,
            "health_check_alarm_topic_arn": monitoring.health_check_alarm_topic_arn,
            "health_check_id": monitoring.health_check_id,
            "dashboard_url": pulumi.Output.from_input(monitoring.dashboard_url),
        }
        missing = set(STACK_OUTPUTS) ^ set(outputs)
        if missing:
            raise AssertionError(f"outputs and STACK_OUTPUTS disagree on {sorted(missing)}")
        return outputs


@dataclass(frozen=True)
class Placement:
    """Where the stack runs, as AWS answers for the deploying credentials."""

    region: str
    account_id: str
    zones: Sequence[str]

    @staticmethod
    def look_up(parent: pulumi.Resource) -> Placement:
        invoke = pulumi.InvokeOptions(parent=parent)
        region = aws.get_region(opts=invoke).region
        account_id = aws.get_caller_identity(opts=invoke).account_id
        zones = aws.get_availability_zones(
            state="available",
            # Local Zones and Wavelength Zones need opting in and lack instance types we use.
            filters=[
                aws.GetAvailabilityZonesFilterArgs(
                    name="opt-in-status", values=["opt-in-not-required"]
                )
            ],
            opts=invoke,
        ).names
        return Placement(region, account_id, zones)


@dataclass(frozen=True)
class Hosts:
    """What every instance of the stack is built from, whichever tier it serves in."""

    rendered: RenderedHosts
    readiness: cloud_config.ReadinessReport
    artifacts: Artifacts
    gates: GateSettings
    agent_policies: dict[str, str]
    """Each role's metrics agent policy ("load-balancer", "web")."""
    boot_needs: list[pulumi.Resource]
    ami: Callable[[str], str]
    """The AMI for an instance type (one lookup per CPU architecture)."""
