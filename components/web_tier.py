"""The web tier: N active-active instances, each Nginx + gunicorn + the app, spread over AZs.

Nodes sit in private subnets without public addresses; only HAProxy reaches them. Each node has
a role of its own (see components/instance_role.py). It boots with what cloud-init needs: the
app's files from the artifacts bucket and its own readiness report. The database secret is a
runtime policy: it names the app's own database secret (components/database_bootstrap.py), never
the RDS master secret and no RDS API; the app asks for the secret again until it may read it
and its user exists, so the nodes boot and install meanwhile instead of waiting for the
database.

Every node has a readiness gate: its address leaves this component only through the gate, so
nothing routes to a node before it serves. Changed nodes are replaced in batches: the nodes of
each batch are created only after the gates of the batch before it, so a release whose first
node (the canary) never becomes ready touches no other node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.data_volume import attach_data_volume
from components.hardened_instance import InstanceSpec, hardened_instance
from components.instance_role import (
    InstanceRole,
    InstanceRoleArgs,
    fetch_files_statement,
    policy_document,
    report_ready_statement,
)
from components.readiness_gate import GateSettings, ReadinessGate, gate_for, report_parameter
from settings.names import host_role_name

ROLE_TAG = "web"


@dataclass(frozen=True)
class NodeDatabase:
    """A web node that runs a database too (`dbMode: colocated`: web-1 the primary, web-2 the
    replica): what it needs besides a web node's, as a database host of `dbMode: ec2` has it."""

    private_ip: str
    """Fixed (an explicit subnet reservation): its database's names point there before it
    boots, and a replacement comes back where the other node looks for it."""
    volume_id: pulumi.Input[str]
    """Its data volume, attached at /dev/sdf; it outlives the instance."""
    policy: pulumi.Input[str]
    """Its role's `database` policy: the database's secrets, its own TLS key, the backups."""
    boot_after: Sequence[pulumi.Resource]
    """What must exist before it boots: its address's reservation, its database's names."""


@dataclass(frozen=True)
class WebNode:
    name: str
    """The node's name: web-1, web-2, ...; also its host name and `X-Served-By` value."""
    subnet_id: pulumi.Input[str]
    user_data: pulumi.Input[str]
    """Known at preview with RDS; with database hosts it carries their CA (pulumi-tls's)."""
    ready_parameter: str
    """The SSM parameter the node reports to once it serves."""
    database: NodeDatabase | None = None
    """The database it runs too, if any."""


@dataclass(frozen=True)
class WebTierArgs:
    name_prefix: str
    ami: str
    instance_type: str
    nodes: Sequence[WebNode]
    batches: Sequence[Sequence[str]]
    """Node names in replacement order (see settings.web_tier.rollout_batches)."""
    security_group_id: pulumi.Input[str]
    app_secret_arn: pulumi.Input[str]
    """The app's database secret (components/database_bootstrap.py); it does not wait for RDS."""
    artifacts_arn: pulumi.Input[str]
    """The S3 objects the nodes fetch the app's code and bigger files from (an ARN pattern)."""
    metrics_agent_policy: str
    """The CloudWatch agent's permissions on this role's log groups and metrics (JSON)."""
    gates: GateSettings
    instance_depends_on: Sequence[pulumi.Resource]
    """What an instance needs before it boots: NAT routes and the firewall's egress rules."""


def secret_read_statements(app_secret_arn: str) -> list[dict[str, object]]:
    """Read exactly the app's own database secret: not the master secret, no RDS API."""
    return [
        {
            "Sid": "ReadTheAppsDatabaseSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": app_secret_arn,
        },
    ]


class WebTier(pulumi.ComponentResource):
    private_ips: pulumi.Output[list[str]]
    """Each node's address once it serves, in node order."""
    instance_ids: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: WebTierArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:web_tier:WebTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        nodes = {node.name: node for node in args.nodes}
        if sorted(n for batch in args.batches for n in batch) != sorted(nodes):
            raise ValueError("the rollout batches must name every web node exactly once")

        parameters = {
            node.name: report_parameter(f"{name}-{node.name}-ready", node.ready_parameter, child)
            for node in args.nodes
        }
        secret_policy = pulumi.Output.from_input(args.app_secret_arn).apply(
            lambda arn: policy_document(*secret_read_statements(arn))
        )
        roles = {
            node.name: InstanceRole(
                f"{name}-{node.name}-identity",
                InstanceRoleArgs(
                    role_name=host_role_name(args.name_prefix, node.name),
                    description=f"Web node {node.name}: Session Manager, its files and report, "
                    "the DB secret",
                    boot_policies={
                        "boot": pulumi.Output.all(
                            args.artifacts_arn, parameters[node.name].arn
                        ).apply(
                            lambda arns: policy_document(
                                fetch_files_statement(arns[0]), report_ready_statement(arns[1])
                            )
                        ),
                        "metrics-agent": args.metrics_agent_policy,
                        **({"database": node.database.policy} if node.database else {}),
                    },
                    runtime_policies={"database-secret": secret_policy},
                ),
                opts=child,
            )
            for node in args.nodes
        }

        self.nodes: dict[str, aws.ec2.Instance] = {}
        self.gates: dict[str, ReadinessGate] = {}
        previous_batch: list[pulumi.Resource] = []
        for batch in args.batches:
            for node_name in batch:
                node = nodes[node_name]
                database = node.database
                instance = hardened_instance(
                    f"{name}-{node.name}",
                    InstanceSpec(
                        name=f"{args.name_prefix}-{node.name}",
                        role=ROLE_TAG,
                        ami=args.ami,
                        instance_type=args.instance_type,
                        subnet_id=node.subnet_id,
                        security_group_id=args.security_group_id,
                        instance_profile=roles[node.name].profile_name,
                        user_data=node.user_data,
                        public_ip=False,
                        private_ip=database.private_ip if database else None,
                        replacement_trigger=args.gates.replacement_trigger(node.name),
                    ),
                    pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[
                            *args.instance_depends_on,
                            *roles[node.name].boot_policies,
                            *(database.boot_after if database else []),
                            *previous_batch,
                        ],
                        # A fixed address and a data volume are on one instance at a time.
                        delete_before_replace=True if database else None,
                    ),
                )
                if database:
                    attach_data_volume(
                        f"{name}-{node.name}-data-attachment", database.volume_id, instance, child
                    )
                self.nodes[node.name] = instance
                self.gates[node.name] = gate_for(
                    f"{name}-{node.name}-gate",
                    host=node.name,
                    instance=instance,
                    userdata=node.user_data,
                    parameter_name=node.ready_parameter,
                    settings=args.gates,
                    opts=child,
                )
            previous_batch = [self.gates[n] for n in batch]

        in_order = [n.name for n in args.nodes]
        self.private_ips = pulumi.Output.all(*[self.gates[n].private_ip for n in in_order])
        self.instance_ids = pulumi.Output.all(*[self.gates[n].instance_id for n in in_order])
        self.register_outputs({"private_ips": self.private_ips, "instance_ids": self.instance_ids})
