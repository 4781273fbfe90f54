"""The whole architecture as one component: network, firewall, database, web tier, load balancer.

Build order follows the data: the network and firewall first; the database and the app's
database secret next (the web tier's role names that secret, which does not wait for RDS; the
bootstrap that creates the app's user does, and runs meanwhile); then the web nodes and
HAProxy, whose userdata only names hosts in the private zone, each behind a readiness gate;
last, the zone's records, which point those names at the addresses of hosts that serve.

What `pulumi up` waits for: every new host's readiness gate (it serves), every DNS switch to
be followed by HAProxy, and only then are the hosts it replaced deleted. So a green `pulumi up`
means the stack serves, and a change never routes a request to a host that does not.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.artifacts import Artifacts, ArtifactsArgs
from components.database import Database, DatabaseArgs
from components.database_bootstrap import (
    DatabaseBootstrap,
    DatabaseBootstrapArgs,
    app_secret_name,
)
from components.firewall import Firewall, FirewallArgs
from components.hardened_instance import ubuntu_ami
from components.internal_dns import InternalDns, InternalDnsArgs
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.readiness_gate import GateSettings
from components.rendered_hosts import (
    APP_USERNAME,
    DATABASE_NAME,
    MASTER_USERNAME,
    metrics_agent_policies,
    readiness_report,
    render_hosts,
)
from components.site_record import SiteRecord, SiteRecordArgs
from components.stack_outputs import STACK_OUTPUTS
from components.web_tier import WebNode, WebTier, WebTierArgs
from settings import AwsProviderSettings, Settings
from settings.instance_types import cpu_architecture
from userdata import cloud_config


class WebInfrastructure(pulumi.ComponentResource):
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
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        prefix = settings.name_prefix

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

        network = Network(
            f"{prefix}-network",
            NetworkArgs(
                vpc_cidr=settings.vpc_cidr,
                availability_zones=zones,
                nat_gateway_per_az=settings.nat_gateways == "perAz",
                region=region,
            ),
            opts=child,
        )
        firewall = Firewall(
            f"{prefix}-firewall",
            FirewallArgs(
                vpc_id=network.vpc_id,
                public_ports=(cloud_config.HTTP_PORT, 443),
                web_port=cloud_config.WEB_PORT,
                database_port=cloud_config.MYSQL_PORT,
            ),
            opts=child,
        )
        database = Database(
            f"{prefix}-database",
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
                subnet_ids=[s.id for s in network.private_subnets],
                security_group_id=firewall.database_group_id,
            ),
            opts=child,
        )
        # The app's own user and secret; only the bootstrap reads the master secret.
        bootstrap = DatabaseBootstrap(
            f"{prefix}-database-bootstrap",
            DatabaseBootstrapArgs(
                name_prefix=prefix,
                secret_name=app_secret_name(prefix),
                app_username=APP_USERNAME,
                database_name=DATABASE_NAME,
                primary_address=database.primary_address,
                port=cloud_config.MYSQL_PORT,
                master_secret_arn=database.master_secret_arn,
                subnet_ids=[s.id for s in network.private_subnets],
                security_group_id=firewall.database_bootstrap_group_id,
                ca_bundle_url=cloud_config.RDS_CA_URL,
                log_retention_days=settings.log_retention_days,
                run_after=[network, firewall],
            ),
            opts=child,
        )

        images: dict[str, str] = {}  # one lookup per CPU architecture

        def ami(instance_type: str) -> str:
            architecture = cpu_architecture(instance_type)
            if architecture not in images:
                images[architecture] = settings.ami_ids.get(architecture) or ubuntu_ami(
                    architecture, self
                )
            return images[architecture]

        hosts = render_hosts(settings, region, account_id)
        load_balancer_userdata, web_userdata = hosts.load_balancer, hosts.web
        readiness = readiness_report(settings, region)
        artifacts = Artifacts(
            f"{prefix}-artifacts",
            ArtifactsArgs(bucket_name=hosts.store.bucket, files=tuple(hosts.files)),
            opts=child,
        )
        gates = GateSettings.read(
            region=region,
            profile=aws_settings.profile,
            timeout_seconds=settings.readiness_timeout_minutes * 60,
            readiness_prefix=settings.readiness_parameter_prefix,
            parent=self,
        )
        agent_policies = metrics_agent_policies(settings, region, account_id)
        # Instances boot into apt and fetch the app: they wait for the NAT routes, the egress
        # rules and the artifacts. Nothing else does (the IAM roles are created meanwhile).
        boot_needs: list[pulumi.Resource] = [network, firewall, artifacts]
        web = WebTier(
            f"{prefix}-web",
            WebTierArgs(
                name_prefix=prefix,
                ami=ami(settings.instance_type),
                instance_type=settings.instance_type,
                nodes=[
                    WebNode(
                        name=node,
                        # Round the zones: web-1 in the first, web-2 in the second, ...
                        subnet_id=network.private_subnets[i % len(network.private_subnets)].id,
                        user_data=web_userdata[node],
                        ready_parameter=readiness.parameter(node),
                    )
                    for i, node in enumerate(settings.web_node_names)
                ],
                batches=settings.rollout_batches,
                security_group_id=firewall.web_group_id,
                app_secret_arn=bootstrap.app_secret_arn,
                artifacts_arn=artifacts.files_arn,
                metrics_agent_policy=agent_policies["web"],
                gates=gates,
                instance_depends_on=boot_needs,
            ),
            opts=child,
        )
        load_balancer = LoadBalancer(
            f"{prefix}-load-balancer",
            LoadBalancerArgs(
                name_prefix=prefix,
                ami=ami(settings.load_balancer_instance_type),
                instance_type=settings.load_balancer_instance_type,
                subnet_id=network.public_subnets[0].id,
                security_group_id=firewall.load_balancer_group_id,
                user_data=load_balancer_userdata,
                ready_parameter=readiness.parameter("load-balancer"),
                artifacts_arn=artifacts.files_arn,
                metrics_agent_policy=agent_policies["load-balancer"],
                gates=gates,
                instance_depends_on=boot_needs,
            ),
            opts=child,
        )
        InternalDns(
            f"{prefix}-dns",
            InternalDnsArgs(
                zone_name=settings.internal_zone,
                vpc_id=network.vpc_id,
                # Addresses from the readiness gates: a name points at a host once it serves.
                a_records={
                    "load-balancer": load_balancer.private_ip,
                    **{node: gate.private_ip for node, gate in web.gates.items()},
                },
                followed_by_haproxy=settings.web_node_names,
                cname_records={
                    "db-primary": database.primary_address,
                    "db-replica": database.replica_address,
                },
            ),
            opts=child,
        )

        if settings.domain and settings.public_zone_id:
            SiteRecord(
                f"{prefix}-site-record",
                SiteRecordArgs(
                    zone_id=settings.public_zone_id,
                    domain=settings.domain,
                    public_ip=load_balancer.public_ip,
                ),
                opts=child,
            )
        https_url = (
            pulumi.Output.from_input(f"https://{settings.domain}")
            if settings.domain
            else load_balancer.public_dns.apply(lambda dns: f"https://{dns}")
        )
        monitoring = Monitoring(
            f"{prefix}-monitoring",
            MonitoringArgs(
                name_prefix=prefix,
                region=region,
                # With a domain, HTTP answers a redirect: check what users get, HTTPS on it.
                public_host=settings.domain or load_balancer.public_dns,
                https=settings.domain is not None,
                web_instance_ids={node: gate.instance_id for node, gate in web.gates.items()},
                load_balancer_instance_id=load_balancer.instance_id,
                db_primary_identifier=settings.db_primary_identifier,
                db_replica_identifier=settings.db_replica_identifier,
                databases=[database],
                db_instance_class=settings.db_instance_class,
                db_allocated_storage_gb=settings.db_allocated_storage_gb,
                alarm_email=settings.alarm_email,
                log_retention_days=settings.log_retention_days,
                health_check_provider=us_east_1,
            ),
            opts=child,
        )

        self.network = network
        self.firewall = firewall
        self.database = database
        self.web = web
        self.load_balancer = load_balancer
        self.outputs = {
            "url": https_url
            if settings.domain
            else load_balancer.public_dns.apply(lambda dns: f"http://{dns}"),
            "https_enabled": pulumi.Output.from_input(settings.domain is not None),
            "https_url": https_url,
            "load_balancer_public_ip": load_balancer.public_ip,
            "load_balancer_public_dns": load_balancer.public_dns,
            "web_private_ips": web.private_ips,
            "db_primary_endpoint": database.primary_endpoint,
            "db_replica_endpoint": database.replica_endpoint,
            "vpc_id": network.vpc_id,
            "public_subnet_ids": network.public_subnet_ids,
            "private_subnet_ids": network.private_subnet_ids,
            "security_group_ids": pulumi.Output.all(
                load_balancer=firewall.load_balancer_group_id,
                web=firewall.web_group_id,
                database=firewall.database_group_id,
            ),
            "alarm_topic_arn": monitoring.alarm_topic_arn,
            "health_check_alarm_topic_arn": monitoring.health_check_alarm_topic_arn,
            "health_check_id": monitoring.health_check_id,
            "dashboard_url": pulumi.Output.from_input(monitoring.dashboard_url),
        }
        missing = set(STACK_OUTPUTS) ^ set(self.outputs)
        if missing:
            raise AssertionError(f"outputs and STACK_OUTPUTS disagree on {sorted(missing)}")
        self.register_outputs(self.outputs)
