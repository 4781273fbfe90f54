"""An IAM role and instance profile for one host: Session Manager, plus what the host needs.

Every instance is reachable through SSM Session Manager (no SSH, no bastion), so every role
gets the Session Manager statement below; a host that needs more passes least-privilege
policies built from statements with `policy_document`.

One role per host, not per tier: a host writes its own readiness report, and the report is
the only proof the gates trust that the host serves. IAM cannot tell the instances of one
role apart in a policy written before they exist (their ids are not known yet, and the
instance ARN in `ec2:SourceInstanceARN` has nothing to compare with in the parameter's
name), so with a shared role any web node could mark another ready. A role per host costs
nothing (IAM roles are free, the default quota is 1,000 per account).

The policies come in two kinds, and the difference is the deploy order:

- boot policies: what the host uses while cloud-init runs (its files, its report, Session
  Manager, the metrics agent). Its instance must wait for every one of them (`boot_policies`),
  or it boots into AccessDenied and never reports ready.
- runtime policies: what only the running software uses and asks for again until it is
  allowed (the app's database secret). Nothing waits for them, so the hosts do not wait for
  whatever those policies name (the database, 6-15 minutes to create).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from settings.names import IAM_NAME_MAX

_IAM_NAME = re.compile(r"[\w+=,.@-]+")


def service_trust(service: str) -> str:
    """A role's trust policy: only `service` (ec2.amazonaws.com, ...) may assume it."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


EC2_TRUST = service_trust("ec2.amazonaws.com")


def policy_document(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def session_manager_statements(instances_arn: str) -> list[dict[str, object]]:
    """What the SSM agent needs for Session Manager, and nothing else.

    The same actions as AWS's own minimal Session Manager instance policy
    (AWSCloud9SSMInstanceProfile): register the instance, open the session's channels.
    Not AmazonSSMManagedInstanceCore, which also grants `ssm:GetParameter(s)` on `*` (any
    host, the internet-facing load balancer included, could read every parameter of the
    account and region) and Run Command, State Manager, inventory and patching, none of which
    this program uses. The agent's heartbeat names the instance it runs on, so it is held to
    the account's instances in the stack's region (`instances_arn`; the instance's own ARN is
    unknown when this policy is written); `ssmmessages` actions take no resource but `*`.
    """
    return [
        {
            "Sid": "RegisterWithSessionManager",
            "Effect": "Allow",
            "Action": "ssm:UpdateInstanceInformation",
            "Resource": instances_arn,
        },
        {
            "Sid": "OpenSessionChannels",
            "Effect": "Allow",
            "Action": [
                "ssmmessages:CreateControlChannel",
                "ssmmessages:CreateDataChannel",
                "ssmmessages:OpenControlChannel",
                "ssmmessages:OpenDataChannel",
            ],
            "Resource": "*",
        },
    ]


def report_ready_statement(parameter_arn: str) -> dict[str, object]:
    """The host may write its own readiness report, nothing else."""
    return {
        "Sid": "ReportReady",
        "Effect": "Allow",
        "Action": "ssm:PutParameter",
        "Resource": parameter_arn,
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
    role_name: str
    """The role's and the instance profile's physical name: at most 64 letters, digits and
    `+=,.@_-` (see settings.names.fit_name)."""
    description: str
    boot_policies: dict[str, pulumi.Input[str]]
    """Label -> a JSON policy document with what the host uses while it boots; the instance
    waits for all of them (pass `InstanceRole.boot_policies` to its `depends_on`)."""
    runtime_policies: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    """Label -> a JSON policy document with what only the running software uses, retrying
    until it is allowed; nothing waits for these."""

    def check(self) -> None:
        problems = []
        if len(self.role_name) > IAM_NAME_MAX or not _IAM_NAME.fullmatch(self.role_name):
            problems.append(
                f"role_name={self.role_name!r}: IAM allows at most {IAM_NAME_MAX} letters, "
                "digits and +=,.@_-"
            )
        labels = [*self.boot_policies, *self.runtime_policies, "session-manager"]
        for label in labels:
            if not _IAM_NAME.fullmatch(label) or labels.count(label) > 1:
                problems.append(f"policy label {label!r}: must be unique, letters, digits, -")
        if problems:
            raise ValueError("invalid InstanceRoleArgs:\n  " + "\n  ".join(problems))


class InstanceRole(pulumi.ComponentResource):
    profile_name: pulumi.Output[str]
    role_name: pulumi.Output[str]
    boot_policies: list[aws.iam.RolePolicy]
    """What the role's instance must depend on: it boots into these permissions."""
    runtime_policies: list[aws.iam.RolePolicy]

    def __init__(
        self, name: str, args: InstanceRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.check()
        super().__init__("web-infra:instance_role:InstanceRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            name=args.role_name,
            assume_role_policy=EC2_TRUST,
            description=args.description,
            opts=child,
        )

        def inline(label: str, policy: pulumi.Input[str]) -> aws.iam.RolePolicy:
            # Inline policies are named within their role: the label is the whole name.
            return aws.iam.RolePolicy(
                f"{name}-{label}", name=label, role=role.id, policy=policy, opts=child
            )

        invoke = pulumi.InvokeOutputOptions(parent=self)
        instances_arn = pulumi.Output.all(
            aws.get_region_output(opts=invoke).region,
            aws.get_caller_identity_output(opts=invoke).account_id,
        ).apply(lambda found: f"arn:aws:ec2:{found[0]}:{found[1]}:instance/*")
        boot = {
            "session-manager": instances_arn.apply(
                lambda arn: policy_document(*session_manager_statements(arn))
            )
        }
        self.boot_policies = [
            inline(label, policy) for label, policy in {**boot, **args.boot_policies}.items()
        ]
        self.runtime_policies = [
            inline(label, policy) for label, policy in args.runtime_policies.items()
        ]
        profile = aws.iam.InstanceProfile(
            f"{name}-profile", name=args.role_name, role=role.name, opts=child
        )
        self.role_name = role.name
        self.profile_name = profile.name
        self.register_outputs({"role_name": self.role_name, "profile_name": self.profile_name})
