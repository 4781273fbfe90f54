"""MySQL on RDS: a primary that takes every write and a read replica that serves reads.

The replica is a variant of the primary, not a copy of it: it names its source with
`replicate_source_db` and carries no engine, database name or credentials of its own (RDS takes
them from the source). The primary keeps automated backups because RDS refuses to create a read
replica of an instance without them. Its master password lives in Secrets Manager, created and
rotated by RDS (`manage_master_user_password`), so no password ever passes through Pulumi state;
only the database bootstrap (components/database_bootstrap.py) may read it, and the app logs in
as a user of its own.

Both instances survive their own changes: the replica has the primary's storage and storage
autoscaling, so it never fills up first (replication would stop); the fixed identifiers are
deleted before a replacement is created (RDS would refuse a second instance of the same name);
the final snapshot's name is unique per stack lifetime, so a second destroy is not blocked by
the first one's snapshot; and whether changes apply at once or in the maintenance window is a
setting (`dbApplyImmediately`).

The database tier has two variants behind one interface, `DatabaseTier`, chosen by `dbMode`:
`RdsTier` (these instances and the bootstrap that creates the app's user),
`components.database_hosts.DatabaseHosts` (MariaDB on two EC2 hosts of the stack's own) and
`components.colocated_database.ColocatedDatabase` (MariaDB on web-1 and web-2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.database_bootstrap import DatabaseBootstrap
from components.readiness_gate import GateSettings
from components.web_tier import NodeDatabase

ENGINE = "mysql"
ENGINE_VERSION = "8.4"
PARAMETER_GROUP_FAMILY = "mysql8.4"
MAX_CONNECT_ERRORS = 1_000_000


@dataclass(frozen=True)
class DatabaseArgs:
    primary_identifier: str
    replica_identifier: str
    database_name: str
    master_username: str
    instance_class: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    """Storage autoscaling limit; the replica grows like the primary."""
    apply_immediately: bool
    """Apply modifications now (brief restarts for some) instead of in the maintenance window."""
    backup_retention_days: int
    """At least 1: a read replica needs automated backups on its source."""
    multi_az: bool
    deletion_protection: bool
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets in at least two AZs (an RDS subnet group requires two)."""
    security_group_id: pulumi.Input[str]


class Database(pulumi.ComponentResource):
    primary_arn: pulumi.Output[str]
    primary_address: pulumi.Output[str]
    primary_endpoint: pulumi.Output[str]
    replica_address: pulumi.Output[str]
    replica_endpoint: pulumi.Output[str]
    master_secret_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:database:Database", name, None, opts)
        if args.backup_retention_days < 1:
            raise ValueError("the primary needs backups (1 day or more) to have a read replica")
        child = pulumi.ResourceOptions(parent=self)

        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=list(args.subnet_ids),
            description="Private subnets of the web-infra database",
            opts=child,
        )
        # TLS is required on every connection; the app verifies the server against the RDS CA.
        parameters = aws.rds.ParameterGroup(
            f"{name}-parameters",
            family=PARAMETER_GROUP_FAMILY,
            description="web-infra MySQL: TLS only, no host blocking",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="require_secure_transport", value="1"),
                # While the database hangs, every connection attempt the web nodes make times
                # out mid-handshake, and MySQL blocks a host after max_connect_errors (100)
                # such errors until FLUSH HOSTS: the nodes would stay locked out after the
                # database recovered. Security groups already decide who may connect.
                aws.rds.ParameterGroupParameterArgs(
                    name="max_connect_errors", value=str(MAX_CONNECT_ERRORS)
                ),
            ],
            opts=child,
        )
        # A new suffix per stack lifetime: the first destroy's snapshot must not block the next.
        snapshot_suffix = random.RandomId(
            f"{name}-final-snapshot-suffix",
            byte_length=4,
            keepers={"identifier": args.primary_identifier},
            opts=child,
        )
        # Fixed identifiers (the alarms and the event subscription name them): a
        # replacement must delete the old instance first. For the primary that means a new,
        # empty database, which `deletionProtection` refuses until it is turned off.
        fixed_name = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        common: dict[str, Any] = {
            "instance_class": args.instance_class,
            "allocated_storage": args.allocated_storage_gb,
            "max_allocated_storage": args.max_allocated_storage_gb,
            "storage_type": "gp3",
            "apply_immediately": args.apply_immediately,
            "vpc_security_group_ids": [args.security_group_id],
            "parameter_group_name": parameters.name,
            "publicly_accessible": False,
            "storage_encrypted": True,
            "auto_minor_version_upgrade": True,
            "copy_tags_to_snapshot": True,
            "deletion_protection": args.deletion_protection,
        }
        primary = aws.rds.Instance(
            f"{name}-primary",
            identifier=args.primary_identifier,
            engine=ENGINE,
            engine_version=ENGINE_VERSION,
            db_name=args.database_name,
            username=args.master_username,
            manage_master_user_password=True,
            db_subnet_group_name=subnets.name,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            skip_final_snapshot=False,
            final_snapshot_identifier=snapshot_suffix.hex.apply(
                lambda suffix: f"{args.primary_identifier}-final-{suffix}"
            ),
            opts=fixed_name,
            **common,
        )
        # No final snapshot for the replica: its data is the primary's, which is snapshotted.
        # Backups off: a replica needs none, and its restores come from the primary's.
        replica = aws.rds.Instance(
            f"{name}-replica",
            identifier=args.replica_identifier,
            replicate_source_db=primary.identifier,
            backup_retention_period=0,
            skip_final_snapshot=True,
            opts=fixed_name,
            **common,
        )

        self.primary_arn = primary.arn
        self.primary_address = primary.address
        self.primary_endpoint = primary.endpoint
        self.replica_address = replica.address
        self.replica_endpoint = replica.endpoint
        self.master_secret_arn = primary.master_user_secrets.apply(_secret_arn)
        self.register_outputs(
            {
                "primary_endpoint": self.primary_endpoint,
                "replica_endpoint": self.replica_endpoint,
                "master_secret_arn": self.master_secret_arn,
            }
        )


def _secret_arn(secrets: Sequence[aws.rds.outputs.InstanceMasterUserSecret]) -> str:
    """The ARN of the master secret RDS created; RDS reports exactly one."""
    if not secrets or not secrets[0].secret_arn:
        raise ValueError("RDS reported no master user secret for the primary")
    return secrets[0].secret_arn


@dataclass(frozen=True)
class DatabaseLaunch:
    """What a database tier of its own hosts boots them with, once the private zone exists."""

    ami: Callable[[str], str]
    """The AMI for an instance type."""
    artifacts_arn: pulumi.Input[str]
    gates: GateSettings
    boot_needs: Sequence[pulumi.Resource]
    """What every instance waits for: NAT routes, egress rules, the artifacts."""
    zone_id: pulumi.Input[str]


class DatabaseTier(Protocol):
    """What the rest of the stack sees of the database, whichever variant runs it."""

    @property
    def primary_endpoint(self) -> pulumi.Output[str]:
        """host:port of the primary (the stack output `db_primary_endpoint`)."""

    @property
    def replica_endpoint(self) -> pulumi.Output[str]: ...

    @property
    def aliases(self) -> Mapping[str, pulumi.Input[str]]:
        """The app's names for the databases (`db-primary`, `db-replica`) and the DNS names
        the private zone points them at; none when the tier makes those records itself."""

    @property
    def app_secret_arn(self) -> pulumi.Output[str]:
        """The app's user and password, which the web nodes read."""

    @property
    def boot_before(self) -> Sequence[pulumi.Resource]:
        """What every other instance waits for (the database hosts' address reservations)."""

    @property
    def resources(self) -> Sequence[pulumi.Resource]:
        """What creates the databases (monitoring waits for them)."""

    def web_user_data(self, node: str, rendered: str) -> pulumi.Input[str]:
        """A web node's userdata, given the one rendered for the stack."""

    def web_node_database(self, node: str) -> NodeDatabase | None:
        """What a web node that runs a database of the tier boots with, if it runs one."""

    def launch(self, launch: DatabaseLaunch) -> None:
        """Boot the tier's own hosts, if it has any, or make what the web nodes running it
        boot with; before the web tier."""


@dataclass(frozen=True)
class RdsTier:
    """`dbMode: rds`: the RDS primary and replica, and the bootstrap that creates the app's
    user; the app verifies them with RDS's CA bundle, which the web nodes download."""

    database: Database
    bootstrap: DatabaseBootstrap

    @property
    def primary_endpoint(self) -> pulumi.Output[str]:
        return self.database.primary_endpoint

    @property
    def replica_endpoint(self) -> pulumi.Output[str]:
        return self.database.replica_endpoint

    @property
    def aliases(self) -> Mapping[str, pulumi.Input[str]]:
        return {
            "db-primary": self.database.primary_address,
            "db-replica": self.database.replica_address,
        }

    @property
    def app_secret_arn(self) -> pulumi.Output[str]:
        return self.bootstrap.app_secret_arn

    @property
    def boot_before(self) -> Sequence[pulumi.Resource]:
        return []

    @property
    def resources(self) -> Sequence[pulumi.Resource]:
        return [self.database]

    def web_user_data(self, node: str, rendered: str) -> pulumi.Input[str]:
        return rendered

    def web_node_database(self, node: str) -> NodeDatabase | None:
        return None

    def launch(self, launch: DatabaseLaunch) -> None:
        """RDS runs the instances."""
