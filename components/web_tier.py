"""The web tier: N active-active instances, each Nginx + gunicorn + the app, spread over AZs.

Nodes sit in private subnets without public addresses; only HAProxy reaches them. Their role may
read exactly one thing: the primary's RDS-managed master secret (found through
DescribeDBInstances on the primary), because the app reads its DB password at run time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.hardened_instance import InstanceSpec, hardened_instance
from components.instance_role import InstanceRole, InstanceRoleArgs

ROLE_TAG = "web"


@dataclass(frozen=True)
class WebNode:
    name: str
    """The node's name: web-1, web-2, ...; also its host name and `X-Served-By` value."""
    subnet_id: pulumi.Input[str]
    user_data: str


@dataclass(frozen=True)
class WebTierArgs:
    name_prefix: str
    ami: str
    instance_type: str
    nodes: Sequence[WebNode]
    security_group_id: pulumi.Input[str]
    database_arn: pulumi.Input[str]
    database_secret_arn: pulumi.Input[str]


def secret_read_policy(database_arn: str, secret_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "FindTheManagedSecret",
                    "Effect": "Allow",
                    "Action": "rds:DescribeDBInstances",
                    "Resource": database_arn,
                },
                {
                    "Sid": "ReadTheManagedSecret",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": secret_arn,
                },
            ],
        }
    )


class WebTier(pulumi.ComponentResource):
    private_ips: pulumi.Output[list[str]]
    instance_ids: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: WebTierArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:web_tier:WebTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        policy = pulumi.Output.all(args.database_arn, args.database_secret_arn).apply(
            lambda arns: secret_read_policy(arns[0], arns[1])
        )
        role = InstanceRole(
            f"{name}-identity",
            InstanceRoleArgs(
                description="Web nodes: Session Manager and the DB master secret",
                inline_policy=policy,
            ),
            opts=child,
        )
        self.nodes: dict[str, aws.ec2.Instance] = {
            node.name: hardened_instance(
                f"{name}-{node.name}",
                InstanceSpec(
                    name=f"{args.name_prefix}-{node.name}",
                    role=ROLE_TAG,
                    ami=args.ami,
                    instance_type=args.instance_type,
                    subnet_id=node.subnet_id,
                    security_group_id=args.security_group_id,
                    instance_profile=role.profile_name,
                    user_data=node.user_data,
                    public_ip=False,
                ),
                child,
            )
            for node in args.nodes
        }
        instances = list(self.nodes.values())
        self.private_ips = pulumi.Output.all(*[i.private_ip for i in instances])
        self.instance_ids = pulumi.Output.all(*[i.id for i in instances])
        self.register_outputs({"private_ips": self.private_ips, "instance_ids": self.instance_ids})
