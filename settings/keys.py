"""What a stack of web-infra is made of: `Settings`, and the table of `web-infra:*` keys that
fills it, each with its default and its parser.

Changes when a setting is added, removed or gets another default: the field, its key and the
key's way forward once it is removed all live here, side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from settings import parsers
from settings.load_balancers import PAIR, SINGLE, load_balancer_names
from settings.names import name_label, name_prefix
from settings.web_tier import MAX_WEB_NODES, MIN_WEB_NODES, rollout_batches, web_node_names
from userdata.metric_catalog import LOG_RETENTION_DAYS_ALLOWED

NAMESPACE = "web-infra"
DB_MODES = ("rds", "ec2", "colocated")
DB_INSTANCE_TYPE = "t4g.small"
RDS_ONLY_KEYS = ("dbInstanceClass", "dbMultiAz", "dbApplyImmediately", "dbMaxAllocatedStorageGb")
"""Keys that configure RDS itself: refused with `dbMode: ec2` or `colocated`, where nothing
reads them."""
EC2_DATABASE_KEYS = ("dbInstanceType",)
"""Keys of the database hosts: refused with `dbMode: rds` and `colocated` (the database runs
on the web nodes, of `instanceType`), where nothing reads them."""


@dataclass(frozen=True)
class Settings:
    """What a stack of web-infra is made of. Field docs give the config key and its rules."""

    project: str
    stack: str
    web_node_count: int
    """`webNodeCount`: web nodes behind the load balancer, 2 to 20."""
    instance_type: str
    """`instanceType`: EC2 type of every web node."""
    load_balancer_instance_type: str
    """`loadBalancerInstanceType`: EC2 type of each HAProxy instance."""
    load_balancer_count: int
    """`loadBalancerCount`: 2 (a pair across two zones sharing the Elastic IP, the default) or
    1 (one instance: cheaper, and the site is down while it is)."""
    db_mode: str
    """`dbMode`: how the database is run; `rds` (RDS MySQL primary + read replica), `ec2`
    (MariaDB on two EC2 hosts of the stack's own, `database-1` the primary and `database-2`
    the replica) or `colocated` (MariaDB on the web nodes themselves, the primary on `web-1`
    and the replica on `web-2`)."""
    db_instance_class: str
    """`dbInstanceClass`: RDS class of the primary and the replica (`rds` only)."""
    db_allocated_storage_gb: int
    """`dbAllocatedStorageGb`: gp3 storage of each database, 20 to 16384 GiB: the RDS
    instances' storage, or with `ec2` (`colocated`) each database host's (web-1's and
    web-2's) data volume."""
    db_backup_retention_days: int
    """`dbBackupRetentionDays`: automated backups kept on the primary, 1 to 35 days."""
    db_multi_az: bool
    """`dbMultiAz`: a synchronous standby for the primary in a second AZ."""
    vpc_cidr: str
    """`vpcCidr`: private IPv4 range of the VPC, /16 to /24."""
    nat_gateways: str
    """`natGateways`: `single` (one NAT gateway) or `perAz` (one per AZ)."""
    ami_ids: dict[str, str]
    """`amiIds`: the pinned image per CPU architecture (`amd64`, `arm64`); unpinned ones follow
    Canonical's current Ubuntu 24.04 image."""
    deletion_protection: bool
    """`deletionProtection`: refuse to delete the database instances."""
    rolling_batch_size: int | None
    """`rollingBatchSize`: web nodes replaced at once after the first (the canary); None: auto."""
    readiness_timeout_minutes: int
    """`readinessTimeoutMinutes`: how long `pulumi up` waits for a new host to serve."""
    db_max_allocated_storage_gb: int
    """`dbMaxAllocatedStorageGb`: storage autoscaling limit of the primary and the replica."""
    db_apply_immediately: bool
    """`dbApplyImmediately`: apply database changes now instead of in the maintenance window."""
    domain: str | None
    """`domain`: the site's DNS name; with it the load balancer gets a certificate by ACME and
    redirects HTTP to HTTPS. None: HTTPS with a self-signed certificate, no redirect."""
    acme_email: str | None
    """`acmeEmail`: the ACME account's contact (expiry warnings); required with a domain."""
    acme_directory_url: str
    """`acmeDirectoryUrl`: the ACME server; Let's Encrypt's production one by default."""
    public_zone_id: str | None
    """`publicZoneId`: a public Route 53 zone in which the program points `domain` at the
    Elastic IP; None: the domain's DNS is managed elsewhere."""
    hsts: bool
    """`hsts`: send Strict-Transport-Security once the CA-issued certificate serves."""
    hsts_max_age_seconds: int
    """`hstsMaxAgeSeconds`: how long browsers insist on HTTPS, 300 s to 2 years."""
    db_max_replica_lag_seconds: int
    """`dbMaxReplicaLagSeconds`: staler than this, the replica is not read (the primary is)."""
    alarm_email: str | None
    """`alarmEmail`: an address subscribed to the stack's alarm topic (AWS asks to confirm)."""
    log_retention_days: int
    """`logRetentionDays`: how long the hosts' logs are kept in CloudWatch Logs."""
    db_instance_type: str = DB_INSTANCE_TYPE
    """`dbInstanceType`: EC2 type of each database host (`ec2` only)."""

    @property
    def name_prefix(self) -> str:
        """The start of every physical name, `web-infra-dev`: see `name_label`."""
        return name_prefix(self.project, self.stack)

    @property
    def internal_zone(self) -> str:
        """The private Route 53 zone that names every host, known before anything exists."""
        return f"{name_label(self.stack)}.{name_label(self.project)}.internal"

    @property
    def web_node_names(self) -> list[str]:
        return web_node_names(self.web_node_count)

    @property
    def rollout_batches(self) -> list[list[str]]:
        """The order in which changed web nodes are replaced: the canary first, then batches."""
        return rollout_batches(self.web_node_names, self.rolling_batch_size)

    @property
    def readiness_parameter_prefix(self) -> str:
        """The SSM path under which each host reports that it serves: `/web-infra-dev/ready`."""
        return f"/{self.name_prefix}/ready"

    @property
    def load_balancer_names(self) -> list[str]:
        """`load-balancer-1` and, in a pair, `load-balancer-2`."""
        return load_balancer_names(self.load_balancer_count)

    @property
    def address_parameter(self) -> str:
        """The SSM parameter holding the Elastic IP's allocation id, which a pair's hosts read
        to claim the address (`/web-infra-dev/load-balancer/elastic-ip`)."""
        return f"/{self.name_prefix}/load-balancer/elastic-ip"

    @property
    def certificate_secret(self) -> str:
        """The Secrets Manager secret the load balancers keep the site's certificate and key in
        (`web-infra-dev/load-balancer/certificate`): made by the program, written by the hosts."""
        return f"{self.name_prefix}/load-balancer/certificate"

    @property
    def db_primary_identifier(self) -> str:
        return f"{self.name_prefix}-primary"

    @property
    def db_replica_identifier(self) -> str:
        return f"{self.name_prefix}-replica"


@dataclass(frozen=True)
class Key:
    name: str
    field: str
    default: Any
    parse: Callable[[Any], Any]


KEYS = (
    Key("webNodeCount", "web_node_count", 2, parsers.integer(MIN_WEB_NODES, MAX_WEB_NODES)),
    Key("instanceType", "instance_type", "t3.small", parsers.instance_type("t3.small")),
    Key(
        "loadBalancerInstanceType",
        "load_balancer_instance_type",
        "t3.micro",
        parsers.instance_type("t3.micro"),
    ),
    Key("loadBalancerCount", "load_balancer_count", PAIR, parsers.integer(SINGLE, PAIR)),
    Key("dbMode", "db_mode", "rds", parsers.choice(*DB_MODES)),
    Key(
        "dbInstanceClass",
        "db_instance_class",
        "db.t4g.micro",
        parsers.matching(
            parsers.DB_INSTANCE_CLASS,
            "an RDS instance class for MySQL such as db.t4g.micro (db.t3/db.t4g micro to 2xlarge, "
            "db.m5 to db.m8g and db.r5 to db.r8g large to 48xlarge, db.x2g)",
        ),
    ),
    Key("dbAllocatedStorageGb", "db_allocated_storage_gb", 20, parsers.integer(20, 16384)),
    Key("dbBackupRetentionDays", "db_backup_retention_days", 7, parsers.integer(1, 35)),
    Key("dbMultiAz", "db_multi_az", False, parsers.boolean),
    Key("vpcCidr", "vpc_cidr", "10.20.0.0/16", parsers.vpc_cidr),
    Key("natGateways", "nat_gateways", "single", parsers.choice("single", "perAz")),
    Key("amiIds", "ami_ids", {}, parsers.ami_ids),
    Key("deletionProtection", "deletion_protection", True, parsers.boolean),
    Key("rollingBatchSize", "rolling_batch_size", None, parsers.integer(1, MAX_WEB_NODES)),
    Key("readinessTimeoutMinutes", "readiness_timeout_minutes", 15, parsers.integer(3, 120)),
    Key("dbMaxAllocatedStorageGb", "db_max_allocated_storage_gb", 100, parsers.integer(20, 65536)),
    Key("dbApplyImmediately", "db_apply_immediately", False, parsers.boolean),
    Key("domain", "domain", None, parsers.domain),
    Key("acmeEmail", "acme_email", None, parsers.email("for the ACME account")),
    Key(
        "acmeDirectoryUrl",
        "acme_directory_url",
        parsers.LETS_ENCRYPT_PRODUCTION,
        parsers.acme_directory_url,
    ),
    Key(
        "publicZoneId",
        "public_zone_id",
        None,
        parsers.matching(
            parsers.HOSTED_ZONE_ID, "a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ"
        ),
    ),
    Key("hsts", "hsts", True, parsers.boolean),
    Key(
        "hstsMaxAgeSeconds",
        "hsts_max_age_seconds",
        parsers.HSTS_MAX_AGE_LIMIT,
        parsers.integer(300, parsers.HSTS_MAX_AGE_LIMIT),
    ),
    Key("dbMaxReplicaLagSeconds", "db_max_replica_lag_seconds", 3, parsers.integer(1, 300)),
    Key("alarmEmail", "alarm_email", None, parsers.email("for the alarms")),
    Key(
        "logRetentionDays",
        "log_retention_days",
        30,
        parsers.one_of_numbers(LOG_RETENTION_DAYS_ALLOWED),
    ),
    Key(
        "dbInstanceType",
        "db_instance_type",
        DB_INSTANCE_TYPE,
        parsers.instance_type(DB_INSTANCE_TYPE),
    ),
)
KNOWN_KEYS = tuple(key.name for key in KEYS)

# Keys earlier versions accepted: a clear way forward instead of "not a setting".
REMOVED_KEYS = {
    "adminCidrs": (
        "SSH was removed: no key pair reaches the instances and web nodes have no public "
        "address; use Session Manager (`aws ssm start-session --target i-...`) and remove it "
        "with `pulumi config rm web-infra:adminCidrs`"
    ),
    "amiId": (
        "images are pinned per CPU architecture now: run "
        "`pulumi config rm web-infra:amiId && pulumi config set --path "
        "web-infra:amiIds.amd64 ami-...` (or `python -m tools.ami --stack <stack> --write`)"
    ),
}
