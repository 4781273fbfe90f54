"""The HAProxy load balancer: one instance in a public subnet behind an Elastic IP.

The Elastic IP keeps the public address stable when the instance is replaced (a userdata change
does that), so DNS records other teams point at `load_balancer_public_ip` stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.hardened_instance import InstanceSpec, hardened_instance
from components.instance_role import InstanceRole, InstanceRoleArgs

ROLE_TAG = "load-balancer"


@dataclass(frozen=True)
class LoadBalancerArgs:
    name_prefix: str
    ami: str
    instance_type: str
    subnet_id: pulumi.Input[str]
    """A public subnet."""
    security_group_id: pulumi.Input[str]
    user_data: str
    """The rendered HAProxy cloud-config; must be known at preview (no AWS-computed values)."""


class LoadBalancer(pulumi.ComponentResource):
    public_ip: pulumi.Output[str]
    public_dns: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    instance_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:load_balancer:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = InstanceRole(
            f"{name}-identity",
            InstanceRoleArgs(description="HAProxy load balancer: Session Manager only"),
            opts=child,
        )
        instance = hardened_instance(
            f"{name}-instance",
            InstanceSpec(
                name=f"{args.name_prefix}-{ROLE_TAG}",
                role=ROLE_TAG,
                ami=args.ami,
                instance_type=args.instance_type,
                subnet_id=args.subnet_id,
                security_group_id=args.security_group_id,
                instance_profile=role.profile_name,
                user_data=args.user_data,
                # A temporary public address lets cloud-init reach apt before the EIP attaches.
                public_ip=True,
            ),
            child,
        )
        address = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            instance=instance.id,
            tags={"Name": f"{args.name_prefix}-{ROLE_TAG}"},
            opts=child,
        )
        self.instance_id = instance.id
        self.private_ip = instance.private_ip
        self.public_ip = address.public_ip
        self.public_dns = address.public_dns
        self.register_outputs(
            {
                "instance_id": self.instance_id,
                "private_ip": self.private_ip,
                "public_ip": self.public_ip,
                "public_dns": self.public_dns,
            }
        )
