"""An IAM role and instance profile for one tier: Session Manager, plus what the tier reads.

Every instance is reachable through SSM Session Manager (no SSH, no bastion), so every role
gets AmazonSSMManagedInstanceCore. A tier that needs more passes a least-privilege policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
EC2_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@dataclass(frozen=True)
class InstanceRoleArgs:
    description: str
    inline_policy: pulumi.Input[str] | None = None
    """A JSON policy document with what the tier's software reads from AWS, if anything."""


class InstanceRole(pulumi.ComponentResource):
    profile_name: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: InstanceRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:instance_role:InstanceRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=EC2_TRUST,
            description=args.description,
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-ssm", role=role.name, policy_arn=SSM_CORE_POLICY, opts=child
        )
        if args.inline_policy is not None:
            aws.iam.RolePolicy(
                f"{name}-policy", role=role.id, policy=args.inline_policy, opts=child
            )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)
        self.role_name = role.name
        self.profile_name = profile.name
        self.register_outputs({"role_name": self.role_name, "profile_name": self.profile_name})
