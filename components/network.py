"""The VPC: public subnets for the load balancer and NAT, private subnets for the web tier and DB.

Two availability zones, one public and one private subnet in each. Private instances reach the
internet (apt, SSM, Secrets Manager) through NAT: one gateway by default, which is cheaper but
ties outbound traffic to one AZ; `natGateways: perAz` gives each AZ its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ZONES_USED = 2


@dataclass(frozen=True)
class SubnetPlan:
    name: str
    cidr: str
    availability_zone: str
    public: bool


def plan_subnets(vpc_cidr: str, availability_zones: Sequence[str]) -> list[SubnetPlan]:
    """Four equal subnets: public and private in each of the first two zones."""
    if len(availability_zones) < ZONES_USED:
        raise ValueError(
            f"the region offers {len(availability_zones)} availability zone(s) without opt-in; "
            f"web-infra needs {ZONES_USED}: choose another aws:region"
        )
    blocks = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=2))
    zones = availability_zones[:ZONES_USED]
    plan = []
    for index, zone in enumerate(zones):
        suffix = zone[-1]
        plan.append(SubnetPlan(f"public-{suffix}", str(blocks[index]), zone, public=True))
        plan.append(
            SubnetPlan(f"private-{suffix}", str(blocks[ZONES_USED + index]), zone, public=False)
        )
    return plan


@dataclass(frozen=True)
class NetworkArgs:
    vpc_cidr: str
    """IPv4 range of the VPC; split into four equal subnets."""
    availability_zones: Sequence[str]
    """Zones to use, in order; the first two are taken."""
    nat_gateway_per_az: bool
    """One NAT gateway per zone instead of one for the whole VPC."""
    region: str
    """For the S3 gateway endpoint's service name."""


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:network:Network", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)

        # DNS support and hostnames are what let the private Route 53 zone answer in the VPC.
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": name},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": name}, opts=child
        )

        public: dict[str, aws.ec2.Subnet] = {}
        private: dict[str, aws.ec2.Subnet] = {}
        for subnet in plan_subnets(args.vpc_cidr, args.availability_zones):
            (public if subnet.public else private)[subnet.availability_zone] = aws.ec2.Subnet(
                f"{name}-{subnet.name}",
                vpc_id=vpc.id,
                cidr_block=subnet.cidr,
                availability_zone=subnet.availability_zone,
                # Nothing in a public subnet gets an address by chance; the load balancer
                # asks for one and then gets its Elastic IP.
                map_public_ip_on_launch=False,
                tags={
                    "Name": f"{name}-{subnet.name}",
                    "Tier": "public" if subnet.public else "private",
                },
                opts=child,
            )

        self._route_table(
            "public",
            vpc.id,
            {f"public-{z[-1]}": s.id for z, s in public.items()},
            gateway_id=gateway.id,
        )

        nat_zones = list(public) if args.nat_gateway_per_az else list(public)[:1]
        nat_gateways = {}
        for zone in nat_zones:
            address = aws.ec2.Eip(
                f"{name}-nat-{zone[-1]}",
                domain="vpc",
                tags={"Name": f"{name}-nat-{zone[-1]}"},
                opts=child,
            )
            nat_gateways[zone] = aws.ec2.NatGateway(
                f"{name}-nat-{zone[-1]}",
                allocation_id=address.id,
                subnet_id=public[zone].id,
                tags={"Name": f"{name}-nat-{zone[-1]}"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
            )

        private_routes = []
        for zone, private_subnet in private.items():
            nat = nat_gateways.get(zone, nat_gateways[nat_zones[0]])
            private_routes.append(
                self._route_table(
                    f"private-{zone[-1]}",
                    vpc.id,
                    {f"private-{zone[-1]}": private_subnet.id},
                    nat_gateway_id=nat.id,
                )
            )
        # The web nodes fetch the app's code from S3 at boot: a gateway endpoint keeps that
        # traffic inside AWS and off the NAT gateway's per-GB charge. It costs nothing.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[r.id for r in private_routes],
            tags={"Name": f"{name}-s3"},
            opts=child,
        )

        self.availability_zones = list(public)
        self.public_subnets = list(public.values())
        self.private_subnets = list(private.values())
        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in self.public_subnets])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in self.private_subnets])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )

    def _route_table(
        self,
        label: str,
        vpc_id: pulumi.Input[str],
        subnets: dict[str, pulumi.Input[str]],
        **default_route: pulumi.Input[str],
    ) -> aws.ec2.RouteTable:
        """A route table whose default route (0.0.0.0/0) goes to `default_route`'s target,
        associated with `subnets` (association label -> subnet id)."""
        child = pulumi.ResourceOptions(parent=self)
        routes = aws.ec2.RouteTable(
            f"{self._name}-{label}",
            vpc_id=vpc_id,
            tags={"Name": f"{self._name}-{label}"},
            opts=child,
        )
        aws.ec2.Route(
            f"{self._name}-{label}-default",
            route_table_id=routes.id,
            destination_cidr_block="0.0.0.0/0",
            opts=child,
            **default_route,
        )
        for zone, subnet_id in subnets.items():
            aws.ec2.RouteTableAssociation(
                f"{self._name}-{label}"
                if label.endswith(f"-{zone}")
                else f"{self._name}-{label}-{zone}",
                subnet_id=subnet_id,
                route_table_id=routes.id,
                opts=child,
            )
        return routes
