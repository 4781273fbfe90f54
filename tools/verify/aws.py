"""The AWS checks of `tools.verify` for the hosts, the security groups and the database: what
EC2 and RDS say about the stack, against the design."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from components.stack_outputs import SECURITY_GROUP_KEYS
from tools.verify.outputs import Endpoint, Outputs, on_rds, on_web_nodes
from tools.verify.report import Check, Facts

GROUP_LABELS = {"load_balancer": "lb sg", "web": "web sg", "database": "db sg"}
MIN_WEB_NODES = 2
MIN_WEB_AZS = 2
MYSQL_PORT = 3306
WORLD_OPEN_PORTS = frozenset({80, 443})
# Every state but terminated: a stopped node is still a node of the stack, and a wrong one.
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


def aws_session(outputs: Outputs, region: str | None = None) -> Any:
    """A boto3 session from the standard environment; region: `region`, else the environment's,
    else the one in the RDS endpoint (`<id>.<hash>.<region>.rds.amazonaws.com`), else the
    alarm topic's (`arn:aws:sns:<region>:...`; the database hosts' endpoints name none)."""
    import boto3  # noqa: PLC0415 - `--skip-aws` and `--help` work without loading boto3

    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        labels = outputs.db_primary_endpoint.host.split(".")
        arn = outputs.monitoring.alarm_topic_arn.split(":")
        if len(labels) >= 5 and labels[-3:-1] == ["rds", "amazonaws"]:
            session = boto3.session.Session(region_name=labels[-4])
        elif len(arn) >= 4 and arn[3]:
            session = boto3.session.Session(region_name=arn[3])
    return session


def live_instances(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances (not terminated) matching `filters`."""
    filters = [*filters, {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    found: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            found.extend(reservation.get("Instances", []))
    return found


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in resource.get("Tags", [])}


def _instance_facts(
    instance: Mapping[str, Any], outputs: Outputs, *, role: str, subnet: str, group: str
) -> Facts:
    """Facts common to the load balancer and the web nodes: state, Role tag, subnet, group."""
    facts = Facts()
    state = str(instance.get("State", {}).get("Name", "?"))
    facts.add(state, state == "running")
    actual_role = tags_of(instance).get("Role", "-")
    facts.add(f"Role={actual_role}", actual_role == role)
    subnet_id = str(instance.get("SubnetId", "-"))
    if subnet_id in outputs.public_subnet_ids:
        facts.add("public subnet", subnet == "public")
    elif subnet_id in outputs.private_subnet_ids:
        facts.add("private subnet", subnet == "private")
    else:
        facts.add(f"subnet {subnet_id} not in outputs", False)
    group_ids = {str(g["GroupId"]) for g in instance.get("SecurityGroups", [])}
    wanted = outputs.security_group_ids[group]
    label = GROUP_LABELS[group]
    if wanted in group_ids:
        facts.add(label)
    else:
        facts.add(f"groups {','.join(sorted(group_ids)) or '-'} lack {label}", False)
    return facts


def check_load_balancer(ec2: Any, outputs: Outputs) -> list[Check]:
    """The instance holding the public IP is the running load balancer; its DNS name matches."""
    ip = outputs.load_balancer_public_ip
    expected = "running, Role=load-balancer, public subnet, lb sg"
    vpc = {"Name": "vpc-id", "Values": [outputs.vpc_id]}
    holders = live_instances(ec2, [vpc, {"Name": "ip-address", "Values": [ip]}])
    if len(holders) != 1:
        tagged = live_instances(ec2, [vpc, {"Name": "tag:Role", "Values": ["load-balancer"]}])
        seen = ", ".join(
            f"{i['InstanceId']} has {i.get('PublicIpAddress', 'no public IP')}" for i in tagged
        )
        found = f"no instance in {outputs.vpc_id} holds {ip}"
        if seen:
            found += f"; Role=load-balancer: {seen}"
        return [
            Check("lb instance", expected, found, False),
            Check("lb public dns", outputs.load_balancer_public_dns, "no instance", False),
        ]
    instance = holders[0]
    facts = _instance_facts(
        instance, outputs, role="load-balancer", subnet="public", group="load_balancer"
    )
    dns = str(instance.get("PublicDnsName") or "-")
    return [
        facts.check("lb instance", expected, prefix=f"{instance['InstanceId']}: "),
        Check(
            "lb public dns",
            outputs.load_balancer_public_dns,
            dns,
            dns.lower() == outputs.load_balancer_public_dns.lower(),
        ),
    ]


def check_web_nodes(ec2: Any, outputs: Outputs) -> list[Check]:
    """Node count, each node by private IP, and the spread over availability zones."""
    vpc = {"Name": "vpc-id", "Values": [outputs.vpc_id]}
    wanted = len(outputs.web_private_ips)
    tagged = live_instances(ec2, [vpc, {"Name": "tag:Role", "Values": ["web"]}])
    checks = [
        Check(
            "web node count",
            f"{wanted} Role=web instances (as web_private_ips), at least {MIN_WEB_NODES}",
            f"{len(tagged)} Role=web instances, {wanted} web_private_ips",
            len(tagged) == wanted >= MIN_WEB_NODES,
        )
    ]
    zones: dict[str, list[str]] = {}
    for name, ip in zip(outputs.web_node_names, outputs.web_private_ips, strict=True):
        expected = f"running, Role=web, Name=*-{name}, private subnet, web sg, no public IP"
        matches = live_instances(ec2, [vpc, {"Name": "private-ip-address", "Values": [ip]}])
        if len(matches) != 1:
            found = f"{len(matches)} instances with private IP {ip} in {outputs.vpc_id}"
            checks.append(Check(f"{name} instance", expected, found, False))
            continue
        instance = matches[0]
        facts = _instance_facts(instance, outputs, role="web", subnet="private", group="web")
        node_name = tags_of(instance).get("Name", "-")
        facts.items.insert(2, (f"Name={node_name}", node_name.endswith(f"-{name}")))
        public_ip = instance.get("PublicIpAddress")
        facts.add(f"public IP {public_ip}" if public_ip else "no public IP", not public_ip)
        checks.append(facts.check(f"{name} instance", expected, f"{instance['InstanceId']}: "))
        zone = str(instance.get("Placement", {}).get("AvailabilityZone", "?"))
        zones.setdefault(zone, []).append(name)
    spread = ", ".join(f"{zone}: {' '.join(names)}" for zone, names in sorted(zones.items()))
    checks.append(
        Check(
            "web AZ spread",
            f"web nodes in >= {MIN_WEB_AZS} AZs",
            spread or "no web node found",
            len(zones) >= MIN_WEB_AZS,
        )
    )
    return checks


def _protocol(permission: Mapping[str, Any]) -> str:
    protocol = str(permission.get("IpProtocol", "?"))
    return {"6": "tcp", "17": "udp", "1": "icmp"}.get(protocol, protocol)


def _ports(permission: Mapping[str, Any]) -> str:
    protocol = _protocol(permission)
    if protocol == "-1":
        return "all traffic"
    low, high = permission.get("FromPort"), permission.get("ToPort")
    if low in (None, -1) or (protocol in ("tcp", "udp") and (low, high) == (0, 65535)):
        return f"{protocol}/all"
    return f"{protocol}/{low}" if low == high else f"{protocol}/{low}-{high}"


def _is_single_port(permission: Mapping[str, Any], ports: Iterable[int]) -> bool:
    low, high = permission.get("FromPort"), permission.get("ToPort")
    return _protocol(permission) == "tcp" and low == high and low in set(ports)


def _sources(permission: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """Every source of a rule: CIDRs, prefix lists, groups (ours by label)."""
    sources = [str(r["CidrIp"]) for r in permission.get("IpRanges", [])]
    sources += [str(r["CidrIpv6"]) for r in permission.get("Ipv6Ranges", [])]
    sources += [str(p["PrefixListId"]) for p in permission.get("PrefixListIds", [])]
    for pair in permission.get("UserIdGroupPairs", []):
        group_id = str(pair.get("GroupId", "?"))
        sources.append(labels.get(group_id, group_id))
    return sources


def _is_world(source: str) -> bool:
    try:
        return ipaddress.ip_network(source, strict=False).prefixlen == 0
    except ValueError:
        return False


def check_security_groups(ec2: Any, outputs: Outputs) -> list[Check]:
    """The database group admits MySQL from the web group only; nothing but 80/443 is public."""
    ids = outputs.security_group_ids
    labels = {ids[key]: GROUP_LABELS[key] for key in SECURITY_GROUP_KEYS}
    response = ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": sorted(set(ids.values()))}]
    )
    groups = {str(g["GroupId"]): g for g in response.get("SecurityGroups", [])}
    checks: list[Check] = []

    # On EC2 the database hosts also replicate to each other (components/firewall.py); on the
    # web nodes (`dbMode: colocated`) the database group has no member and the web group
    # admits the web tier.
    hosts = not on_rds(outputs) and not on_web_nodes(outputs)
    peers = {GROUP_LABELS["web"]} | ({GROUP_LABELS["database"]} if hosts else set())
    db_expected = f"only tcp/{MYSQL_PORT} from web sg ({ids['web']})"
    if hosts:
        db_expected += " and db sg (replication)"
    database = groups.get(ids["database"])
    if database is None:
        checks.append(Check("db sg ingress", db_expected, f"{ids['database']} not found", False))
    else:
        facts = Facts()
        for permission in database.get("IpPermissions", []):
            mysql = _is_single_port(permission, [MYSQL_PORT])
            for source in _sources(permission, labels):
                good = mysql and source in peers
                facts.add(f"{_ports(permission)} from {source}", good)
        if not facts.items:
            facts.add("no ingress rules", False)
        elif not any(ok for _, ok in facts.items):
            facts.add("nothing from web sg", False)
        checks.append(facts.check("db sg ingress", db_expected))

    for key in SECURITY_GROUP_KEYS:
        name = f"{GROUP_LABELS[key]} world ingress"
        expected = "at most tcp/80, tcp/443 from 0.0.0.0/0, ::/0"
        group = groups.get(ids[key])
        if group is None:
            checks.append(Check(name, expected, f"{ids[key]} not found", False))
            continue
        facts = Facts()
        for permission in group.get("IpPermissions", []):
            web = _is_single_port(permission, WORLD_OPEN_PORTS)
            world = [source for source in _sources(permission, labels) if _is_world(source)]
            if world:
                facts.add(f"{_ports(permission)} from {' '.join(world)}", web)
        if not facts.items:
            facts.add("nothing open to the world")
        checks.append(facts.check(name, expected))
    return checks


def db_instance(rds: Any, identifier: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        response = rds.describe_db_instances(DBInstanceIdentifier=identifier)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            return None
        raise
    instances: list[dict[str, Any]] = response.get("DBInstances", [])
    return instances[0] if instances else None


def _db_facts(db: Mapping[str, Any], endpoint: Endpoint, outputs: Outputs) -> Facts:
    facts = Facts()
    status = str(db.get("DBInstanceStatus", "?"))
    facts.add(status, status == "available")
    engine = str(db.get("Engine", "?"))
    facts.add(engine, engine == "mysql")
    facts.add(*(("encrypted", True) if db.get("StorageEncrypted") else ("not encrypted", False)))
    public = db.get("PubliclyAccessible") is True
    facts.add("publicly accessible" if public else "not public", not public)
    group_ids = {str(g.get("VpcSecurityGroupId")) for g in db.get("VpcSecurityGroups", [])}
    if outputs.security_group_ids["database"] in group_ids:
        facts.add("db sg")
    else:
        facts.add(f"groups {','.join(sorted(group_ids)) or '-'} lack db sg", False)
    address = db.get("Endpoint") or {}
    actual = f"{address.get('Address', '-')}:{address.get('Port', '-')}"
    if actual == str(endpoint):
        facts.add("endpoint matches")
    else:
        facts.add(f"endpoint {actual}", False)
    return facts


def check_database(rds: Any, outputs: Outputs) -> list[Check]:
    """Primary and replica state, and the replication link both ways."""
    primary_id = outputs.db_primary_endpoint.identifier
    replica_id = outputs.db_replica_endpoint.identifier
    common = "available, mysql, encrypted, not public, db sg, endpoint matches"
    primary_expected = f"{common}, backups > 0 days"
    link_expected = f"replica's source is {primary_id}, primary lists {replica_id}"
    checks: list[Check] = []

    primary = db_instance(rds, primary_id)
    if primary is None:
        checks.append(Check("db primary", primary_expected, f"{primary_id}: not found", False))
    else:
        facts = _db_facts(primary, outputs.db_primary_endpoint, outputs)
        days = int(primary.get("BackupRetentionPeriod") or 0)
        facts.add(f"backups {days} days", days > 0)
        checks.append(facts.check("db primary", primary_expected, f"{primary_id}: "))

    replica = db_instance(rds, replica_id)
    if replica is None:
        checks.append(Check("db replica", common, f"{replica_id}: not found", False))
    else:
        facts = _db_facts(replica, outputs.db_replica_endpoint, outputs)
        checks.append(facts.check("db replica", common, f"{replica_id}: "))

    link = Facts()
    source = (replica or {}).get("ReadReplicaSourceDBInstanceIdentifier")
    if replica is None:
        link.add("no replica", False)
    else:
        # The source is an identifier in the same region, an ARN across regions.
        source_id = str(source).rsplit(":", 1)[-1] if source else "-"
        link.add(f"replica's source is {source_id}", source_id == primary_id)
    if primary is not None:
        listed = [str(r) for r in primary.get("ReadReplicaDBInstanceIdentifiers", [])]
        shown = ", ".join(listed) or "nothing"
        link.add(f"primary lists {shown}", replica_id in listed)
    else:
        link.add("no primary", False)
    checks.append(link.check("db replication", link_expected))
    return checks
