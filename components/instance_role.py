"""An IAM role and instance profile for one tier: Session Manager, plus what the tier needs.

Every instance is reachable through SSM Session Manager (no SSH, no bastion), so every role
gets AmazonSSMManagedInstanceCore. A tier that needs more passes a least-privilege policy,
built from statements with `policy_document`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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


def policy_document(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def report_ready_statement(parameter_arns: list[str]) -> dict[str, object]:
    """The tier's hosts may write their readiness reports (`parameter_arns`), nothing else."""
    return {
        "Sid": "ReportReady",
        "Effect": "Allow",
        "Action": "ssm:PutParameter",
        "Resource": parameter_arns if len(parameter_arns) > 1 else parameter_arns[0],
    }


def fetch_files_statement(objects_arn: str) -> dict[str, object]:
    """The files too big for userdata (the app's code, scripts), from the artifacts bucket."""
    return {
        "Sid": "FetchFilesTooBigForUserdata",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": objects_arn,
    }


@dataclass(frozen=True)
class InstanceRoleArgs:
    description: str
    inline_policies: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    """Label -> a JSON policy document with what the tier's software needs from AWS."""


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
        for label, policy in args.inline_policies.items():
            aws.iam.RolePolicy(f"{name}-{label}", role=role.id, policy=policy, opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)
        self.role_name = role.name
        self.profile_name = profile.name
        self.register_outputs({"role_name": self.role_name, "profile_name": self.profile_name})
