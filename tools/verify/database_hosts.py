"""The database checks of `tools.verify` for `dbMode: ec2`: the two database hosts as EC2 sees
them (components/database_hosts.py), in place of RDS's instances; with `dbMode: colocated`,
web-1 and web-2 (components/colocated_database.py), web nodes with the same data volumes.

The endpoints name the hosts' records in the private zone (`database-1.<zone>:3306`), which
only the VPC resolves; the hosts are found instead by their Role tag and their Name, which ends
in the record's first label. What EC2 cannot see (replication running, TLS) each host proved
before its readiness gate let the rollout on (`database_node.py check`).
"""

from __future__ import annotations

from typing import Any

from tools.verify.aws import live_instances, tags_of
from tools.verify.outputs import Endpoint, Outputs, on_web_nodes
from tools.verify.report import Check, Facts

ROLE = "database"
WEB_ROLE = "web"
DATA_DEVICE = "/dev/sdf"
MIN_DATABASE_AZS = 2


def _data_volume(ec2: Any, instance_id: str) -> dict[str, Any] | None:
    volumes: list[dict[str, Any]] = ec2.describe_volumes(
        Filters=[
            {"Name": "attachment.instance-id", "Values": [instance_id]},
            {"Name": "attachment.device", "Values": [DATA_DEVICE]},
        ]
    ).get("Volumes", [])
    return volumes[0] if volumes else None


def _host_check(
    ec2: Any, outputs: Outputs, what: str, endpoint: Endpoint, hosts: list[dict[str, Any]]
) -> tuple[Check, str | None]:
    """One host's check and its availability zone (None when it was not found)."""
    name = endpoint.identifier
    role, group, label = (
        (WEB_ROLE, outputs.security_group_ids["web"], "web sg")
        if on_web_nodes(outputs)
        else (ROLE, outputs.security_group_ids["database"], "db sg")
    )
    expected = (
        f"running, Role={role}, Name=*-{name}, private subnet, {label}, no public IP, "
        f"encrypted data volume at {DATA_DEVICE}"
    )
    matches = [h for h in hosts if tags_of(h).get("Name", "").endswith(f"-{name}")]
    if len(matches) != 1:
        found = f"{len(matches)} Role={role} instances named *-{name} in {outputs.vpc_id}"
        return Check(what, expected, found, False), None
    instance = matches[0]
    facts = Facts()
    state = str(instance.get("State", {}).get("Name", "?"))
    facts.add(state, state == "running")
    facts.add(f"Role={role}")
    facts.add(f"Name={tags_of(instance).get('Name')}")
    subnet = str(instance.get("SubnetId", "-"))
    facts.add(
        "private subnet" if subnet in outputs.private_subnet_ids else f"subnet {subnet}",
        subnet in outputs.private_subnet_ids,
    )
    groups = {str(g["GroupId"]) for g in instance.get("SecurityGroups", [])}
    facts.add(label if group in groups else f"lacks {label}", group in groups)
    public_ip = instance.get("PublicIpAddress")
    facts.add(f"public IP {public_ip}" if public_ip else "no public IP", not public_ip)
    volume = _data_volume(ec2, str(instance["InstanceId"]))
    if volume is None:
        facts.add(f"no volume at {DATA_DEVICE}", False)
    else:
        encrypted = bool(volume.get("Encrypted"))
        facts.add(
            f"{'encrypted' if encrypted else 'unencrypted'} data volume {volume['VolumeId']}",
            encrypted,
        )
    zone = str(instance.get("Placement", {}).get("AvailabilityZone", "?"))
    return facts.check(what, expected, f"{instance['InstanceId']}: "), zone


def check_database_hosts(ec2: Any, outputs: Outputs) -> list[Check]:
    """The primary's and the replica's hosts, and that they are in two zones."""
    vpc = {"Name": "vpc-id", "Values": [outputs.vpc_id]}
    role = WEB_ROLE if on_web_nodes(outputs) else ROLE
    hosts = live_instances(ec2, [vpc, {"Name": "tag:Role", "Values": [role]}])
    checks: list[Check] = []
    zones: dict[str, str] = {}
    for what, endpoint in (
        ("db primary", outputs.db_primary_endpoint),
        ("db replica", outputs.db_replica_endpoint),
    ):
        check, zone = _host_check(ec2, outputs, what, endpoint, hosts)
        checks.append(check)
        if zone is not None:
            zones[endpoint.identifier] = zone
    spread = ", ".join(f"{name}: {zone}" for name, zone in sorted(zones.items()))
    checks.append(
        Check(
            "db hosts AZ spread",
            f"primary and replica in {MIN_DATABASE_AZS} AZs",
            spread or "no database host found",
            len(set(zones.values())) >= MIN_DATABASE_AZS,
        )
    )
    return checks
