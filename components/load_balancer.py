"""The HAProxy load balancers behind the Elastic IP: a pair across two zones, or one instance.

The Elastic IP is the stable public address other teams point DNS at. Two ways to hold it:

- **A pair** (the default): `load-balancer-1` and `load-balancer-2`, one per public subnet and
  zone, the same HAProxy config, both health-checking every web node. keepalived on each
  (unicast VRRP, tracking HAProxy) elects the holder, and the holder's `elastic_address.py`
  associates the Elastic IP with itself through EC2's API; when it dies the peer takes over in
  seconds, when it is stopped or replaced it resigns and waits until the peer holds the address.
  So the program does not associate the address: it writes the allocation id to an SSM
  parameter the hosts read, and gives each host's role exactly `ec2:AssociateAddress` on that
  allocation and on its own instance. Each host has a fixed private address (the 11th of its
  subnet) with a record in the private zone made before either boots: keepalived's config
  names the peer by that record. A fixed address cannot be on two instances at once, so a
  changed host is deleted before its replacement is created (`delete_before_replace`); its peer
  serves meanwhile, and the two are replaced one at a time, the second only after the first's
  replacement passed its readiness gate.
- **One instance** (`loadBalancerCount: 1`): the Elastic IP's association is a resource of the
  program that takes the instance from the readiness gate, so a replacement gets the address
  once its HAProxy serves, and the old instance is deleted after that. The site is down while
  that one instance is.

With a domain, the hosts share one certificate: the program creates an empty Secrets Manager
secret (`<prefix>/load-balancer/certificate`) that only their roles may read and write (a boot
policy); the host that obtains a certificate stores it there, and the other host, and every
replacement, serves it from there instead of asking the CA (userdata/scripts/site_certificate.py).
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
from components.readiness_gate import GateSettings, ReadinessGate, gate_for, report_parameter
from settings.names import host_role_name

ROLE_TAG = "load-balancer"
RECORD_TTL_SECONDS = 10


@dataclass(frozen=True)
class LoadBalancerHost:
    name: str
    """`load-balancer-1`, `load-balancer-2`: the host name and its record in the private zone."""
    subnet_id: pulumi.Input[str]
    """A public subnet, one per zone."""
    user_data: str
    """The rendered cloud-config; must be known at preview (no AWS-computed values)."""
    ready_parameter: str
    """The SSM parameter the instance reports to once HAProxy serves."""
    private_ip: str | None
    """The pair's fixed address in its subnet; None for a single load balancer."""


@dataclass(frozen=True)
class LoadBalancerArgs:
    name_prefix: str
    ami: str
    instance_type: str
    hosts: Sequence[LoadBalancerHost]
    """One host, or the pair (in replacement order)."""
    security_group_id: pulumi.Input[str]
    artifacts_arn: pulumi.Input[str]
    """The S3 objects the instances fetch their bigger files from (an ARN pattern)."""
    metrics_agent_policy: str
    """The CloudWatch agent's permissions on this role's log groups and metrics (JSON)."""
    gates: GateSettings
    instance_depends_on: Sequence[pulumi.Resource]
    """What an instance needs before it boots: the internet route and egress rules."""
    zone_id: pulumi.Input[str]
    zone_name: str
    """The private zone where each host gets its record (`load-balancer-1.<zone>`)."""
    address_parameter: str
    """The SSM parameter the pair's hosts read the Elastic IP's allocation id from."""
    region: str
    account_id: str
    certificate_secret: str | None = None
    """With a domain: the secret the hosts keep the site's certificate and key in (its name,
    known at preview); the program creates it empty, and only these hosts may read or write it."""


def certificate_statement(secret_arn: str) -> dict[str, object]:
    """The pair's certificate: read it (a new host serves it instead of asking the CA), store
    a new one (certbot's deploy hook). That secret only, no other value."""
    return {
        "Sid": "ShareTheSiteCertificate",
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
        "Resource": secret_arn,
    }


def address_read_statements(parameter_arn: str) -> list[dict[str, object]]:
    """What a host of the pair reads at boot and while it runs: which address, and who has it."""
    return [
        {
            "Sid": "ReadWhichElasticIp",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": parameter_arn,
        },
        {
            # Describe* actions take no resource but `*` (EC2's service authorization reference).
            "Sid": "SeeWhoHoldsTheElasticIp",
            "Effect": "Allow",
            "Action": "ec2:DescribeAddresses",
            "Resource": "*",
        },
    ]


def claim_address_statement(allocation_arn: str, instance_arn: str) -> dict[str, object]:
    """Associate exactly the stack's Elastic IP with exactly this host's instance."""
    return {
        "Sid": "TakeTheElasticIp",
        "Effect": "Allow",
        "Action": "ec2:AssociateAddress",
        "Resource": [allocation_arn, instance_arn],
    }


class LoadBalancer(pulumi.ComponentResource):
    public_ip: pulumi.Output[str]
    public_dns: pulumi.Output[str]
    instance_ids: dict[str, pulumi.Output[str]]
    """Each host's serving instance (from its readiness gate), by host name."""
    private_ips: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:load_balancer:LoadBalancer", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        pair = len(args.hosts) > 1
        address = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            tags={"Name": f"{args.name_prefix}-{ROLE_TAG}"},
            opts=self._child,
        )
        self._allocation_arn = address.allocation_id.apply(
            lambda allocation: (
                f"arn:aws:ec2:{args.region}:{args.account_id}:elastic-ip/{allocation}"
            )
        )
        self._address_parameter = (
            aws.ssm.Parameter(
                f"{name}-elastic-ip",
                name=args.address_parameter,
                type="String",
                # Not a secret: plain in previews and diffs.
                insecure_value=address.allocation_id,
                description="The Elastic IP the load-balancer pair shares (its allocation id)",
                opts=self._child,
            )
            if pair
            else None
        )
        self._certificate_secret = (
            aws.secretsmanager.Secret(
                f"{name}-certificate",
                name=args.certificate_secret,
                description="The site's certificate and key, shared by the load balancers "
                "(written by them: certbot's deploy hook)",
                # Deleted at once on destroy: the name is fixed, and a secret pending deletion
                # would block the next stack of that name for up to 30 days. A new stack's
                # first load balancer obtains a new certificate.
                recovery_window_in_days=0,
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            if args.certificate_secret
            else None
        )
        gates: dict[str, ReadinessGate] = {}
        previous: list[pulumi.Resource] = []
        for host in args.hosts:
            gates[host.name] = self._host(host, after=previous)
            previous = [gates[host.name]]
        if not pair:
            only = gates[args.hosts[0].name]
            aws.ec2.EipAssociation(
                f"{name}-eip-association",
                allocation_id=address.allocation_id,
                instance_id=only.instance_id,
                # A replacement association takes the address from the old instance in one
                # call; the old association's delete then finds nothing left to detach.
                allow_reassociation=True,
                opts=self._child,
            )
        self.instance_ids = {host: gate.instance_id for host, gate in gates.items()}
        self.private_ips = {host: gate.private_ip for host, gate in gates.items()}
        self.public_ip = address.public_ip
        self.public_dns = address.public_dns
        self.register_outputs(
            {
                "instance_ids": self.instance_ids,
                "private_ips": self.private_ips,
                "public_ip": self.public_ip,
                "public_dns": self.public_dns,
            }
        )

    def _host(self, host: LoadBalancerHost, after: Sequence[pulumi.Resource]) -> ReadinessGate:
        """One load balancer: its role, its record, its instance and its readiness gate."""
        # web-infra-dev-load-balancer-1-...: the host's name, not the component's again.
        args, name, child = self._args, f"{self._args.name_prefix}-{host.name}", self._child
        parameter = report_parameter(f"{name}-ready", host.ready_parameter, child)
        boot_policies: dict[str, pulumi.Input[str]] = {
            "boot": pulumi.Output.all(parameter.arn, args.artifacts_arn).apply(
                lambda arns: policy_document(
                    fetch_files_statement(arns[1]), report_ready_statement(arns[0])
                )
            ),
            "metrics-agent": args.metrics_agent_policy,
        }
        if self._address_parameter is not None:
            boot_policies["elastic-ip"] = self._address_parameter.arn.apply(
                lambda arn: policy_document(*address_read_statements(arn))
            )
        if self._certificate_secret is not None:
            # A boot policy: the first boot's site-certificate.service reads the secret.
            boot_policies["site-certificate"] = self._certificate_secret.arn.apply(
                lambda arn: policy_document(certificate_statement(arn))
            )
        role = InstanceRole(
            f"{name}-identity",
            InstanceRoleArgs(
                role_name=host_role_name(args.name_prefix, host.name),
                description=f"HAProxy {host.name}: Session Manager, its files, readiness"
                + (", the Elastic IP" if self._address_parameter is not None else "")
                + (", the certificate" if self._certificate_secret is not None else ""),
                boot_policies=boot_policies,
            ),
            opts=child,
        )
        boot_needs: list[pulumi.Resource] = [*args.instance_depends_on, *role.boot_policies]
        if host.private_ip is not None:
            # keepalived on both hosts finds its peer by this record at first boot.
            boot_needs.append(self._record(host.name, host.private_ip))
        instance = hardened_instance(
            name,
            InstanceSpec(
                name=f"{args.name_prefix}-{host.name}",
                role=ROLE_TAG,
                ami=args.ami,
                instance_type=args.instance_type,
                subnet_id=host.subnet_id,
                security_group_id=args.security_group_id,
                instance_profile=role.profile_name,
                user_data=host.user_data,
                # Its own public address reaches apt and AWS's APIs whether or not it holds
                # the Elastic IP (EC2 gives it a new one when the Elastic IP moves away).
                public_ip=True,
                private_ip=host.private_ip,
                replacement_trigger=args.gates.replacement_trigger(host.name),
            ),
            # It boots into its role's permissions: they must exist first. The pair's second
            # host is replaced only once the first's replacement serves.
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[*boot_needs, *after],
                # A fixed address is on one instance at a time: delete, then create.
                delete_before_replace=host.private_ip is not None,
            ),
        )
        if self._address_parameter is not None:
            # Created once the instance exists (its ARN names it); elastic_address.py retries
            # until it may, and a new host is the peer's backup meanwhile.
            aws.iam.RolePolicy(
                f"{name}-identity-claim-elastic-ip",
                name="claim-elastic-ip",
                role=role.role_name,
                policy=pulumi.Output.all(self._allocation_arn, instance.arn).apply(
                    lambda arns: policy_document(claim_address_statement(arns[0], arns[1]))
                ),
                opts=pulumi.ResourceOptions(parent=role),
            )
        gate = gate_for(
            f"{name}-gate",
            host=host.name,
            instance=instance,
            userdata=host.user_data,
            parameter_name=host.ready_parameter,
            settings=args.gates,
            opts=child,
        )
        if host.private_ip is None:
            self._record(host.name, gate.private_ip)
        return gate

    def _record(self, host: str, address: pulumi.Input[str]) -> aws.route53.Record:
        return aws.route53.Record(
            f"{self._args.name_prefix}-{host}-record",
            zone_id=self._args.zone_id,
            name=f"{host}.{self._args.zone_name}",
            type="A",
            ttl=RECORD_TTL_SECONDS,
            records=[address],
            opts=self._child,
        )
