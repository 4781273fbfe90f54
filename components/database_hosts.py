"""`dbMode: ec2`: MariaDB on two EC2 hosts of the stack's own, a primary and a replica.

`database-1` (the primary, first zone) and `database-2` (the replica, second zone) boot by
cloud-init like every other host (`userdata/database_host.py`); `database_node.py` on each
mounts the data volume, starts MariaDB, and creates the users (primary) or replicates over TLS
from the primary (replica). This component makes what they boot with:

- **their names before they boot**: each host has a fixed private address in an explicit subnet
  CIDR reservation (`settings/database_hosts.py`) and an A record in the private zone made
  before it boots; an instance is deleted before its replacement is created
  (`delete_before_replace`: the address, and the volume, are on one instance at a time). The
  replica's instance is created only once the primary's passed its readiness gate.
- **data that outlives the host**: each host's data directory is on an encrypted gp3 volume of
  its own, in its zone, protected (`pulumi destroy` and a replacement stop at it) and with a
  final snapshot should it ever be deleted. It names nothing of the instance, so no change of
  image or userdata touches it; a replacement instance gets the same volume attached.
- **secrets no one types**: the admin, replication and app users' passwords (pulumi-random) and
  each host's TLS key (pulumi-tls, signed by the stack's own CA) are Secrets Manager secrets.
  A host's role reads exactly the three users' secrets and its own key; the web nodes read the
  app's (the same secret name as with RDS), and verify the hosts with the CA, which is public.
- **backups**: a bucket of their own (encrypted, versioned, public access blocked, TLS only)
  whose `database/` objects expire after `dbBackupRetentionDays`; each host may list, read and
  write under `database/` only.

Security groups: 3306 to the hosts from the web tier and between the two hosts only
(components/firewall.py); no SSH (Session Manager, as every host).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_aws as aws
import pulumi_random as random
import pulumi_tls as tls

from components.data_volume import attach_data_volume
from components.database import DatabaseLaunch
from components.database_bootstrap import PASSWORD_LENGTH, SPECIAL_CHARACTERS
from components.hardened_instance import InstanceSpec, hardened_instance
from components.instance_role import (
    InstanceRole,
    InstanceRoleArgs,
    fetch_files_statement,
    policy_document,
    report_ready_statement,
)
from components.private_bucket import private_bucket
from components.readiness_gate import ReadinessGate, gate_for, report_parameter
from components.web_tier import NodeDatabase
from settings.names import host_role_name
from userdata.database_host import BACKUP_PREFIX, with_database_ca

ROLE_TAG = "database"
RECORD_TTL_SECONDS = 10
PORT = 3306
CA_VALIDITY_HOURS = 10 * 365 * 24
SERVER_CERT_VALIDITY_HOURS = 2 * 365 * 24
SERVER_CERT_RENEWAL_HOURS = 60 * 24
"""A `pulumi up` in the last 60 days of a server certificate makes a new one (and so replaces
that host, rolling: the primary, then the replica)."""


@dataclass(frozen=True)
class DatabaseHost:
    name: str
    """`database-1` or `database-2`: the host name and its record in the private zone."""
    role: str
    """`primary` or `replica`."""
    subnet_id: pulumi.Input[str]
    """A private subnet, one per zone."""
    availability_zone: str
    """The subnet's zone: the data volume must be in it."""
    private_ip: str
    reserved_cidr: str
    """The explicit subnet reservation the fixed address lies in."""
    ready_parameter: str


@dataclass(frozen=True)
class DatabaseHostsArgs:
    name_prefix: str
    hosts: Sequence[DatabaseHost]
    """The primary first, then the replica (their replacement order)."""
    instance_type: str
    data_volume_gb: int
    security_group_id: pulumi.Input[str]
    zone_name: str
    """The private zone where each host gets its record (`database-1.<zone>`)."""
    usernames: dict[str, str]
    """`admin`, `replication`, `app` -> the MySQL user name."""
    app_secret_name: str
    """The app's secret: the web nodes' config names it, as with RDS."""
    backup_bucket_name: str
    backup_retention_days: int
    render_userdata: UserdataRenderer
    """The host's userdata from what AWS and pulumi-tls made for it (pure)."""
    metrics_agent_policy: str
    """PutMetricData in the stack's namespace (`rendered_hosts.metrics_agent_policies`): the
    CloudWatch agent's memory and disks, and the replica's replication reports."""

    def check(self) -> None:
        roles = [host.role for host in self.hosts]
        if roles != ["primary", "replica"]:
            raise ValueError(f"the database hosts are a primary, then a replica, not {roles}")
        if set(self.usernames) != {"admin", "replication", "app"}:
            raise ValueError("the database hosts need the admin, replication and app users")


class UserdataRenderer(Protocol):
    """Renders a host's userdata (`components.rendered_hosts.database_host_userdata`)."""

    def __call__(
        self,
        host: str,
        *,
        volume_id: str,
        secrets: dict[str, str],
        key_secret: str,
        ca_pem: str,
        cert_pem: str,
    ) -> str: ...


def read_secrets_statement(secret_arns: Sequence[str]) -> dict[str, object]:
    """The users' passwords and the host's own TLS key: exactly those secrets."""
    return {
        "Sid": "ReadTheDatabaseSecrets",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": sorted(secret_arns),
    }


def backup_statements(bucket_arn: str) -> list[dict[str, object]]:
    """List, read and write the backups under `database/` (and abort a multipart upload
    there): nothing else of the bucket, and no delete (the bucket's lifecycle rule expires old
    backups; versioning keeps overwritten ones)."""
    return [
        {
            "Sid": "ListTheBackups",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [BACKUP_PREFIX, f"{BACKUP_PREFIX}*"]}},
        },
        {
            "Sid": "ReadAndWriteTheBackups",
            "Effect": "Allow",
            # A backup is uploaded in parts: a failed one aborts its upload (the lifecycle
            # rule aborts what a killed host left behind).
            "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            "Resource": f"{bucket_arn}/{BACKUP_PREFIX}*",
        },
    ]


@dataclass(frozen=True)
class HostIdentity:
    """What a host of the database boots with, made before it boots."""

    policy: pulumi.Output[str]
    """Its role's `database` policy: the users' secrets, its own key, the backups."""
    user_data: pulumi.Output[str]


class DatabaseHosts(pulumi.ComponentResource):
    """Made in two steps: its secrets, certificates, bucket, reservations and volumes first
    (the web tier reads the app's secret and the CA); its hosts with `launch`, once the
    private zone exists for their records."""

    ca_pem: pulumi.Output[str]
    component_type = "web-infra:database_hosts:DatabaseHosts"

    def __init__(
        self, name: str, args: DatabaseHostsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.check()
        super().__init__(self.component_type, name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        # Fixed names: a replacement deletes the old secret first, and destroy deletes at once
        # (a secret pending deletion would block the next stack of that name for 30 days).
        self._fixed_name = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self._secrets = {
            user: self._user_secret(user, username) for user, username in args.usernames.items()
        }
        self._ca_key = tls.PrivateKey(
            f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=self._child
        )
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=self._ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"{args.name_prefix} database CA", organization="web-infra"
            ),
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=self._child,
        )
        self.ca_pem = ca.cert_pem
        self._ca = ca
        self._bucket = self._backup_bucket()
        self._reservations: dict[str, aws.ec2.SubnetCidrReservation] = {}
        self._volumes: dict[str, aws.ebs.Volume] = {}
        for host in args.hosts:
            self._reservations[host.name] = aws.ec2.SubnetCidrReservation(
                f"{name}-{host.name}-address",
                subnet_id=host.subnet_id,
                cidr_block=host.reserved_cidr,
                reservation_type="explicit",
                description=f"{args.name_prefix} {host.name}: its fixed address",
                opts=self._child,
            )
            self._volumes[host.name] = aws.ebs.Volume(
                f"{name}-{host.name}-data",
                availability_zone=host.availability_zone,
                size=args.data_volume_gb,
                type="gp3",
                encrypted=True,
                final_snapshot=True,
                tags={"Name": f"{args.name_prefix}-{host.name}-data", "Role": ROLE_TAG},
                # The data outlives every instance: destroy and replacement stop here.
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
        self.gates: dict[str, ReadinessGate] = {}
        primary, replica = (f"{host.name}.{args.zone_name}" for host in args.hosts)
        self._names = (primary, replica)

    # --- what the rest of the stack reads (components.database.DatabaseTier) ---------------

    @property
    def primary_endpoint(self) -> pulumi.Output[str]:
        return self._endpoint(0)

    @property
    def replica_endpoint(self) -> pulumi.Output[str]:
        return self._endpoint(1)

    @property
    def aliases(self) -> Mapping[str, pulumi.Input[str]]:
        return {"db-primary": self._names[0], "db-replica": self._names[1]}

    @property
    def app_secret_arn(self) -> pulumi.Output[str]:
        return self._secrets["app"].arn

    @property
    def boot_before(self) -> Sequence[pulumi.Resource]:
        return list(self._reservations.values())

    @property
    def resources(self) -> Sequence[pulumi.Resource]:
        return [self]

    def web_user_data(self, node: str, rendered: str) -> pulumi.Input[str]:
        return self.ca_pem.apply(lambda ca: with_database_ca(rendered, ca))

    def web_node_database(self, node: str) -> NodeDatabase | None:
        """The web nodes only connect to the hosts."""
        return None

    def _endpoint(self, index: int) -> pulumi.Output[str]:
        """host:port, once the host serves (as RDS's endpoint exists once RDS does)."""
        name = self._names[index]
        host = self._args.hosts[index].name
        if host not in self.gates:
            raise RuntimeError("the database hosts' endpoints exist once they are launched")
        return self.gates[host].ready_at.apply(lambda _: f"{name}:{PORT}")

    # --- the hosts -------------------------------------------------------------------------

    def launch(self, launch: DatabaseLaunch) -> None:
        """Each host's role, record, instance, volume attachment and readiness gate: the
        replica's instance after the primary's gate."""
        after: list[pulumi.Resource] = []
        for host in self._args.hosts:
            self.gates[host.name] = self._host(host, launch, after)
            after = [self.gates[host.name]]
        self.register_outputs(
            {
                "primary_endpoint": self.primary_endpoint,
                "replica_endpoint": self.replica_endpoint,
                "ca_pem": self.ca_pem,
            }
        )

    def _identity(self, host: DatabaseHost) -> HostIdentity:
        """What a host needs before it boots, whoever launches it: its TLS key's secret (the
        certificate's in its userdata), its role's database policy and its userdata."""
        args, child = self._args, self._child
        name = f"{args.name_prefix}-{host.name}"
        key, certificate = self._server_certificate(host)
        key_secret = aws.secretsmanager.Secret(
            f"{name}-tls-key",
            name=f"{args.name_prefix}/{host.name}/tls-key",
            description=f"{host.name}'s MariaDB server key (PEM), signed by the stack's CA",
            recovery_window_in_days=0,
            opts=self._fixed_name,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-tls-key-value",
            secret_id=key_secret.id,
            secret_string=key.private_key_pem,
            opts=child,
        )
        secret_arns = [secret.arn for secret in self._secrets.values()]
        policy = pulumi.Output.all(self._bucket.arn, key_secret.arn, *secret_arns).apply(
            lambda arns: policy_document(
                read_secrets_statement(arns[1:]), *backup_statements(arns[0])
            )
        )
        volume = self._volumes[host.name]
        render = args.render_userdata
        user_data = pulumi.Output.all(
            volume.id,
            key_secret.arn,
            self.ca_pem,
            certificate.cert_pem,
            *secret_arns,
        ).apply(
            lambda made: render(
                host.name,
                volume_id=made[0],
                key_secret=made[1],
                ca_pem=made[2],
                cert_pem=made[3],
                secrets=dict(zip(self._secrets, made[4:], strict=True)),
            )
        )
        return HostIdentity(policy=policy, user_data=user_data)

    def _host(
        self, host: DatabaseHost, launch: DatabaseLaunch, after: Sequence[pulumi.Resource]
    ) -> ReadinessGate:
        args, child = self._args, self._child
        name = f"{args.name_prefix}-{host.name}"
        identity = self._identity(host)
        parameter = report_parameter(f"{name}-ready", host.ready_parameter, child)
        role = InstanceRole(
            f"{name}-identity",
            InstanceRoleArgs(
                role_name=host_role_name(args.name_prefix, host.name),
                description=f"MariaDB {host.role} {host.name}: Session Manager, its files and "
                "report, the database's secrets and backups, its metrics",
                boot_policies={
                    "boot": pulumi.Output.all(parameter.arn, launch.artifacts_arn).apply(
                        lambda arns: policy_document(
                            fetch_files_statement(arns[1]), report_ready_statement(arns[0])
                        )
                    ),
                    "database": identity.policy,
                    "metrics-agent": args.metrics_agent_policy,
                },
            ),
            opts=child,
        )
        record = aws.route53.Record(
            f"{name}-record",
            zone_id=launch.zone_id,
            name=f"{host.name}.{args.zone_name}",
            type="A",
            ttl=RECORD_TTL_SECONDS,
            records=[host.private_ip],
            opts=child,
        )
        volume = self._volumes[host.name]
        user_data = identity.user_data
        instance = hardened_instance(
            name,
            InstanceSpec(
                name=name,
                role=ROLE_TAG,
                ami=launch.ami(args.instance_type),
                instance_type=args.instance_type,
                subnet_id=host.subnet_id,
                security_group_id=args.security_group_id,
                instance_profile=role.profile_name,
                user_data=user_data,
                public_ip=False,
                private_ip=host.private_ip,
                replacement_trigger=launch.gates.replacement_trigger(host.name),
            ),
            pulumi.ResourceOptions(
                parent=self,
                # Its role's permissions, its name and its address exist before it boots; the
                # replica waits for the primary to serve.
                depends_on=[
                    *launch.boot_needs,
                    *role.boot_policies,
                    record,
                    self._reservations[host.name],
                    *after,
                ],
                # A fixed address and a volume are on one instance at a time.
                delete_before_replace=True,
            ),
        )
        attach_data_volume(f"{name}-data-attachment", volume.id, instance, child)
        return gate_for(
            f"{name}-gate",
            host=host.name,
            instance=instance,
            userdata=user_data,
            parameter_name=host.ready_parameter,
            settings=launch.gates,
            opts=child,
        )

    def _server_certificate(
        self, host: DatabaseHost
    ) -> tuple[tls.PrivateKey, tls.LocallySignedCert]:
        """The host's key and certificate, for its own name and the app's name for it
        (`db-primary` or `db-replica`), signed by the stack's CA."""
        name = f"{self._args.name_prefix}-{host.name}"
        zone = self._args.zone_name
        alias = "db-primary" if host.role == "primary" else "db-replica"
        key = tls.PrivateKey(
            f"{name}-tls-key-pair", algorithm="ECDSA", ecdsa_curve="P256", opts=self._child
        )
        request = tls.CertRequest(
            f"{name}-tls-request",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(
                common_name=f"{host.name}.{zone}", organization="web-infra"
            ),
            dns_names=[f"{host.name}.{zone}", f"{alias}.{zone}"],
            opts=self._child,
        )
        certificate = tls.LocallySignedCert(
            f"{name}-tls-certificate",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._ca_key.private_key_pem,
            ca_cert_pem=self._ca.cert_pem,
            validity_period_hours=SERVER_CERT_VALIDITY_HOURS,
            early_renewal_hours=SERVER_CERT_RENEWAL_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"],
            opts=self._child,
        )
        return key, certificate

    def _user_secret(self, user: str, username: str) -> aws.secretsmanager.Secret:
        """A user's name and generated password, in a secret the hosts (and, for the app's,
        the web nodes) read; the password never appears in userdata or outputs."""
        name, args = self._name, self._args
        password = random.RandomPassword(
            f"{name}-{user}-password",
            length=PASSWORD_LENGTH,
            special=True,
            override_special=SPECIAL_CHARACTERS,
            opts=self._child,
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-{user}-secret",
            name=args.app_secret_name
            if user == "app"
            else f"{args.name_prefix}/database/{user}-user",
            description=f"The database's {user} user and password (made by the program)",
            recovery_window_in_days=0,
            opts=self._fixed_name,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-{user}-secret-value",
            secret_id=secret.id,
            secret_string=pulumi.Output.json_dumps(
                {"username": username, "password": password.result}
            ),
            opts=self._child,
        )
        return secret

    def _backup_bucket(self) -> aws.s3.Bucket:
        """Encrypted, versioned, private and TLS-only; `database/` objects expire after the
        retention (the hosts write full backups and binary logs there, and delete nothing)."""
        name, args, child = self._name, self._args, self._child
        # Backups are not the program's to throw away: destroy stops at a non-empty bucket.
        bucket = private_bucket(
            f"{name}-backups",
            f"{name}-backups",
            bucket_name=args.backup_bucket_name,
            force_destroy=False,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-backups-encrypted",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-backups-versioned",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        days = args.backup_retention_days
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-backups-retention",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-database-backups",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=BACKUP_PREFIX),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=1
                    ),
                )
            ],
            # S3 applies a lifecycle rule to a versioned bucket's versions once versioning is on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        return bucket
