"""Security groups: each tier admits only the tier in front of it.

Internet -> load balancer on 80/443; load balancer -> web tier on the web port; web tier and
the database bootstrap function -> database on 3306; a pair of load balancers -> each other, VRRP
only. With database hosts of the stack's own (`dbMode: ec2`) there is no bootstrap function:
the hosts admit the web tier and each other (replication) on 3306, and reach apt and AWS's APIs
(80, 443) through the NAT gateway. With the database on web-1 and web-2 (`dbMode: colocated`)
the web tier's own group admits 3306 from itself; the database group stays (the stack's
outputs name it) with no member. No SSH anywhere: Session Manager is the
way in (it needs no inbound port). Rules are separate resources, so groups can reference each
other without a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ANYWHERE = "0.0.0.0/0"
VRRP_PROTOCOL = "112"  # IANA's number for VRRP; it has no ports


@dataclass(frozen=True)
class FirewallArgs:
    vpc_id: pulumi.Input[str]
    public_ports: Sequence[int]
    """Ports the load balancer serves to the internet (80, and 443 for later TLS)."""
    web_port: int
    """The port Nginx listens on, on every web node."""
    database_port: int
    vrrp: bool = False
    """A pair of load balancers: VRRP (IP protocol 112) between the members of their group."""
    database_hosts: bool = False
    """The database runs on EC2 hosts of the stack's own, not RDS (no bootstrap function)."""
    database_on_web_nodes: bool = False
    """The database runs on web-1 and web-2 (`dbMode: colocated`; no bootstrap function):
    3306 between the web nodes."""


class Firewall(pulumi.ComponentResource):
    load_balancer_group_id: pulumi.Output[str]
    web_group_id: pulumi.Output[str]
    database_group_id: pulumi.Output[str]
    database_bootstrap_group_id: pulumi.Output[str] | None
    """None with database hosts: no bootstrap function runs."""

    def __init__(
        self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:firewall:Firewall", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                f"{name}-{role}",
                vpc_id=args.vpc_id,
                description=description,
                tags={"Name": f"{name}-{role}"},
                opts=child,
            )

        load_balancer = group("load-balancer", "HAProxy: HTTP(S) from the internet")
        web = group("web", "Web nodes: the web port from the load balancer only")
        database = group("database", "MySQL: 3306 from the web tier only")
        bootstrap = (
            None
            if args.database_hosts or args.database_on_web_nodes
            else group(
                "database-bootstrap", "The database bootstrap function: MySQL and AWS APIs out"
            )
        )

        for port in args.public_ports:
            self._ingress("load-balancer", port, load_balancer, cidr=ANYWHERE, why="public HTTP(S)")
        self._ingress("web", args.web_port, web, source=load_balancer, why="from HAProxy")
        self._ingress("database", args.database_port, database, source=web, why="from the web tier")
        if bootstrap is not None:
            self._ingress(
                "database-bootstrap",
                args.database_port,
                database,
                source=bootstrap,
                why="from the database bootstrap",
            )
        elif args.database_on_web_nodes:
            self._ingress(
                "web-database",
                args.database_port,
                web,
                source=web,
                why="the database on web-1 and web-2, from the web tier (and replication)",
            )
        else:
            self._ingress(
                "database-replication",
                args.database_port,
                database,
                source=database,
                why="replication between the database hosts",
            )

        # Outbound: what each tier really calls. apt mirrors use 80, AWS APIs (SSM, Secrets
        # Manager, RDS) and the RDS CA download use 443. DNS and NTP go to the VPC's own
        # resolvers, which security groups do not filter. The database needs no egress.
        for role, target in (("load-balancer", load_balancer), ("web", web)):
            for port in (80, 443):
                self._egress(f"{role}-{port}", port, target, cidr=ANYWHERE)
        self._egress("load-balancer-web", args.web_port, load_balancer, destination=web)
        self._egress("web-database", args.database_port, web, destination=database)
        if args.database_on_web_nodes:
            # Every node reads from web-2's database and writes to web-1's; web-2 replicates.
            self._egress("web-web-database", args.database_port, web, destination=web)
        elif bootstrap is not None:
            # The bootstrap reads its secrets and the RDS CA bundle (443), then logs in to MySQL.
            self._egress("database-bootstrap-443", 443, bootstrap, cidr=ANYWHERE)
            self._egress(
                "database-bootstrap-database", args.database_port, bootstrap, destination=database
            )
        else:
            # The hosts install from apt (80), read their secrets and write backups (443), and
            # the replica reads from the primary.
            for port in (80, 443):
                self._egress(f"database-{port}", port, database, cidr=ANYWHERE)
            self._egress("database-replication", args.database_port, database, destination=database)

        if args.vrrp:
            # keepalived's unicast advertisements, from and to the pair's own group only.
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-load-balancer-in-vrrp",
                security_group_id=load_balancer.id,
                ip_protocol=VRRP_PROTOCOL,
                referenced_security_group_id=load_balancer.id,
                description="VRRP from the other load balancer of the pair",
                opts=child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-load-balancer-vrrp-out",
                security_group_id=load_balancer.id,
                ip_protocol=VRRP_PROTOCOL,
                referenced_security_group_id=load_balancer.id,
                description="VRRP to the other load balancer of the pair",
                opts=child,
            )
        self.load_balancer_group_id = load_balancer.id
        self.web_group_id = web.id
        self.database_group_id = database.id
        self.database_bootstrap_group_id = bootstrap.id if bootstrap is not None else None
        self.register_outputs(
            {
                "load_balancer_group_id": self.load_balancer_group_id,
                "web_group_id": self.web_group_id,
                "database_group_id": self.database_group_id,
                "database_bootstrap_group_id": self.database_bootstrap_group_id,
            }
        )

    def _ingress(
        self,
        label: str,
        port: int,
        group: aws.ec2.SecurityGroup,
        *,
        why: str,
        cidr: str | None = None,
        source: aws.ec2.SecurityGroup | None = None,
    ) -> None:
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-{label}-in-{port}",
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            cidr_ipv4=cidr,
            referenced_security_group_id=source.id if source else None,
            description=why,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _egress(
        self,
        label: str,
        port: int,
        group: aws.ec2.SecurityGroup,
        *,
        cidr: str | None = None,
        destination: aws.ec2.SecurityGroup | None = None,
    ) -> None:
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-{label}-out",
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            cidr_ipv4=cidr,
            referenced_security_group_id=destination.id if destination else None,
            opts=pulumi.ResourceOptions(parent=self),
        )
