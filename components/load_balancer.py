"""The HAProxy load balancer: one instance in a public subnet behind an Elastic IP.

The Elastic IP is the stable public address other teams point DNS at. Its association with the
instance is a resource of its own, and it takes the instance from the readiness gate: when the
load balancer is replaced (a new image, a new HAProxy config), the address moves to the new
instance only once its HAProxy serves, and the old instance is deleted after that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.hardened_instance import InstanceSpec, hardened_instance
from components.instance_role import (
    InstanceRole,
    InstanceRoleArgs,
    fetch_files_statement,
    policy_document,
    report_ready_statement,
)
from components.readiness_gate import GateSettings, gate_for, report_parameter
from settings.names import host_role_name

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
    ready_parameter: str
    """The SSM parameter the instance reports to once HAProxy serves."""
    artifacts_arn: pulumi.Input[str]
    """The S3 objects the instance fetches its bigger files from (an ARN pattern)."""
    metrics_agent_policy: str
    """The CloudWatch agent's permissions on this role's log groups and metrics (JSON)."""
    gates: GateSettings
    instance_depends_on: Sequence[pulumi.Resource]
    """What the instance needs before it boots: the internet route and egress rules."""


class LoadBalancer(pulumi.ComponentResource):
    public_ip: pulumi.Output[str]
    public_dns: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    """The serving instance's address (from its readiness gate)."""
    instance_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:load_balancer:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        parameter = report_parameter(f"{name}-ready", args.ready_parameter, child)
        role = InstanceRole(
            f"{name}-identity",
            InstanceRoleArgs(
                role_name=host_role_name(args.name_prefix, ROLE_TAG),
                description="HAProxy load balancer: Session Manager, its files, readiness",
                boot_policies={
                    "boot": pulumi.Output.all(parameter.arn, args.artifacts_arn).apply(
                        lambda arns: policy_document(
                            fetch_files_statement(arns[1]), report_ready_statement(arns[0])
                        )
                    ),
                    "metrics-agent": args.metrics_agent_policy,
                },
            ),
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
                # A temporary public address lets cloud-init reach apt before the EIP moves here.
                public_ip=True,
                replacement_trigger=args.gates.replacement_trigger(ROLE_TAG),
            ),
            # It boots into its role's permissions: they must exist first.
            pulumi.ResourceOptions(
                parent=self, depends_on=[*args.instance_depends_on, *role.boot_policies]
            ),
        )
        gate = gate_for(
            f"{name}-gate",
            host=ROLE_TAG,
            instance=instance,
            userdata=args.user_data,
            parameter_name=args.ready_parameter,
            settings=args.gates,
            opts=child,
        )
        address = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            tags={"Name": f"{args.name_prefix}-{ROLE_TAG}"},
            opts=child,
        )
        aws.ec2.EipAssociation(
            f"{name}-eip-association",
            allocation_id=address.allocation_id,
            instance_id=gate.instance_id,
            # A replacement association takes the address from the old instance in one call;
            # the old association's delete then finds nothing left to detach.
            allow_reassociation=True,
            opts=child,
        )
        self.instance_id = gate.instance_id
        self.private_ip = gate.private_ip
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
