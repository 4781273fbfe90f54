"""The whole architecture as one component: network, firewall, database, web tier, load balancer.

Build order follows the data: the network and firewall first; the database tier and the app's
database secret next (the web tier's role names that secret, which does not wait for the
database); then the web nodes and HAProxy, whose userdata only names hosts in the private zone,
each behind a readiness gate; last, the zone's records, which point those names at the addresses
of hosts that serve. The database tier is a variant chosen by `dbMode`
(`components.database_modes`): RDS and the bootstrap function that creates the app's user, or
MariaDB hosts of the stack's own (two of their own, or web-1 and web-2), which boot once the
private zone holds their names.

The constructor is that sequence and nothing else: each step is a method with one job that
takes the slice of settings its tier needs into the tier's typed args (a new mode of a tier is a
variant in that tier's module, not a branch here). Every host's userdata comes from the pure
`components.rendered_hosts`, which the labs read too.

What `pulumi up` waits for: every new host's readiness gate (it serves), every DNS switch to
be followed by HAProxy, and only then are the hosts it replaced deleted. So a green `pulumi up`
means the stack serves, and a change never routes a request to a host that does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi

from components.artifacts import Artifacts, ArtifactsArgs
from components.database import DatabaseLaunch, DatabaseTier
from components.database_hosts import DatabaseHosts
from components.database_modes import database_tier
from components.firewall import Firewall, FirewallArgs
from components.hardened_instance import ubuntu_ami
from components.internal_dns import HostRecords, InternalDns, InternalDnsArgs
from components.load_balancer import LoadBalancer, LoadBalancerArgs, LoadBalancerHost
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.placement import Placement
from components.readiness_gate import GateSettings
from components.rendered_hosts import (
    RenderedHosts,
    metrics_agent_policies,
    readiness_report,
    render_hosts,
)
from components.site_record import SiteRecord, SiteRecordArgs
from components.stack_outputs import STACK_OUTPUTS
from components.web_tier import WebNode, WebTier, WebTierArgs
from settings import AwsProviderSettings, Settings
from settings import colocated_database as colocated_shape
from settings.instance_types import cpu_architecture
from settings.load_balancers import PAIR, fixed_private_ip
from userdata import cloud_config


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
        """The database tier in the variant `dbMode` asks for (`components.database_modes`)."""
        return database_tier(settings, where, self.network, self.firewall, self._child)

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
