"""Test doubles for tools.verify: a web-infra stack built with boto3 (run it under moto's
`mock_aws`) and a loopback HTTP server that plays HAProxy + the web nodes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

from userdata.metric_catalog import (
    DB_EVENT_CATEGORIES,
    HEALTH_CHECK,
    LOAD_BALANCER,
    LOG_SOURCES,
    AlarmSpec,
    Metric,
    Ref,
    StackShape,
    catalogue,
    dashboard_url,
    db_event_subscription_name,
    instance_ref,
)

REGION = "us-east-1"
PREFIX = "web-infra-dev"
AMI = "ami-12c6146b"  # any id will do for moto
WORLD = {"IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}


def launch(
    ec2: Any,
    name: str,
    role: str,
    subnet: str,
    security_group: str,
    *,
    instance_type: str = "t3.micro",
) -> dict[str, Any]:
    """One instance as the program launches a host: in its subnet and group, tagged with its
    Name and Role (what tools.verify finds hosts by)."""
    tags = [{"Key": "Name", "Value": name}, {"Key": "Role", "Value": role}]
    instance: dict[str, Any] = ec2.run_instances(
        ImageId=AMI,
        MinCount=1,
        MaxCount=1,
        InstanceType=instance_type,
        SubnetId=subnet,
        SecurityGroupIds=[security_group],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]
    return instance


class Clients:
    """boto3 clients made once each (making one costs ~0.15 s), handed to tools.verify as a
    session: `client(service, region_name=...)` answers for any service and region."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], Any] = {}
        self.ec2: Any = self.client("ec2")
        self.rds: Any = self.client("rds")

    def client(self, service: str, region_name: str = REGION, **_options: Any) -> Any:
        key = (service, region_name)
        if key not in self._made:
            self._made[key] = boto3.client(service, region_name=region_name)
        return self._made[key]


def admit(ec2: Any, group_id: str, port: int, source_group_id: str) -> None:
    """TCP `port` into `group_id` from the members of `source_group_id`, as the firewall does."""
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "UserIdGroupPairs": [{"GroupId": source_group_id}],
            }
        ],
    )


def build_stack(
    clients: Clients,
    prefix: str = PREFIX,
    *,
    web_azs: tuple[str, ...] = ("us-east-1a", "us-east-1b"),
    replica: bool = True,
    monitoring: bool = True,
    pair: bool = False,
) -> dict[str, Any]:
    """Create the design with boto3 and return what `pulumi stack output --json` would print.

    Stacks with different prefixes live side by side in one (moto) account, each in its own VPC.
    One web node per entry of `web_azs`, each in the private subnet of that AZ; `replica=False`
    leaves the read replica out (the outputs still name it); `monitoring=False` leaves out what
    the monitoring component creates (the outputs still name it); `pair=True` runs the
    load-balancer pair (load-balancer-1 holding the Elastic IP, load-balancer-2 its peer)."""
    ec2, rds = clients.ec2, clients.rds
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    igw_id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    zones = ("us-east-1a", "us-east-1b")
    public = {
        zone: ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate(zones)
    }
    private = {
        zone: ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"10.0.{10 + i}.0/24", AvailabilityZone=zone
        )["Subnet"]["SubnetId"]
        for i, zone in enumerate(zones)
    }

    def group(name: str) -> str:
        group_id: str = ec2.create_security_group(
            GroupName=f"{prefix}-{name}", Description=name, VpcId=vpc_id
        )["GroupId"]
        return group_id

    lb_sg, web_sg, db_sg = group("load-balancer"), group("web"), group("database")
    ec2.authorize_security_group_ingress(
        GroupId=lb_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **WORLD} for port in (80, 443)
        ],
    )
    admit(ec2, web_sg, 80, lb_sg)
    admit(ec2, db_sg, 3306, web_sg)

    lb_name = f"{prefix}-load-balancer" + ("-1" if pair else "")
    lb = launch(ec2, lb_name, "load-balancer", public[zones[0]], lb_sg)
    pair_ids = {}
    if pair:
        second = launch(ec2, f"{prefix}-load-balancer-2", "load-balancer", public[zones[1]], lb_sg)
        pair_ids = {"load-balancer-1": lb["InstanceId"], "load-balancer-2": second["InstanceId"]}
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(InstanceId=lb["InstanceId"], AllocationId=eip["AllocationId"])
    lb = ec2.describe_instances(InstanceIds=[lb["InstanceId"]])["Reservations"][0]["Instances"][0]

    web_ips = []
    web_ids = {}
    for n, zone in enumerate(web_azs, start=1):
        node = launch(ec2, f"{prefix}-web-{n}", "web", private[zone], web_sg)
        web_ips.append(node["PrivateIpAddress"])
        web_ids[f"web-{n}"] = node["InstanceId"]

    rds.create_db_subnet_group(
        DBSubnetGroupName=f"{prefix}-db",
        DBSubnetGroupDescription="private subnets",
        SubnetIds=list(private.values()),
    )
    primary = rds.create_db_instance(
        DBInstanceIdentifier=f"{prefix}-primary",
        Engine="mysql",
        DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        BackupRetentionPeriod=7,
        StorageEncrypted=True,
        PubliclyAccessible=False,
        DBSubnetGroupName=f"{prefix}-db",
        VpcSecurityGroupIds=[db_sg],
    )["DBInstance"]
    replica_host = f"{prefix}-replica" + primary["Endpoint"]["Address"].removeprefix(
        f"{prefix}-primary"
    )
    if replica:
        replica_host = rds.create_db_instance_read_replica(
            DBInstanceIdentifier=f"{prefix}-replica",
            SourceDBInstanceIdentifier=f"{prefix}-primary",
            DBInstanceClass="db.t4g.micro",
            PubliclyAccessible=False,
            VpcSecurityGroupIds=[db_sg],
        )["DBInstance"]["Endpoint"]["Address"]

    shape = StackShape(
        prefix,
        REGION,
        tuple(web_ids),
        f"{prefix}-primary",
        f"{prefix}-replica",
        "db.t4g.micro",
        20,
        load_balancers=("load-balancer-1", "load-balancer-2") if pair else (),
    )
    # A pair's instance alarms watch each host (load-balancer-1, -2); a single one's is the
    # catalogue's `load-balancer`.
    instance_ids = {LOAD_BALANCER: lb["InstanceId"], **pair_ids, **web_ids}
    monitoring_outputs = build_monitoring(
        clients, shape, instance_ids, lb["PublicDnsName"], create=monitoring
    )
    return {
        **monitoring_outputs,
        "url": f"http://{lb['PublicDnsName']}",
        "load_balancer_public_ip": eip["PublicIp"],
        "load_balancer_public_dns": lb["PublicDnsName"],
        "web_private_ips": web_ips,
        "db_primary_endpoint": f"{primary['Endpoint']['Address']}:3306",
        "db_replica_endpoint": f"{replica_host}:3306",
        "vpc_id": vpc_id,
        "public_subnet_ids": list(public.values()),
        "private_subnet_ids": list(private.values()),
        "security_group_ids": {"load_balancer": lb_sg, "web": web_sg, "database": db_sg},
    }


def put_alarm(
    cloudwatch: Any, spec: AlarmSpec, prefix: str, refs: Mapping[Ref, str], topic: str
) -> None:
    """The alarm as the program declares it, through the CloudWatch API."""
    actions = [topic]
    if spec.recover_instance:
        actions.append(f"arn:aws:automate:{REGION}:ec2:recover")
    common: dict[str, Any] = {
        "AlarmName": spec.name(prefix),
        "AlarmDescription": spec.description(),
        "ComparisonOperator": spec.comparison,
        "Threshold": spec.threshold,
        "EvaluationPeriods": spec.evaluation_periods,
        "DatapointsToAlarm": spec.datapoints_to_alarm,
        "TreatMissingData": spec.treat_missing_data,
        "AlarmActions": actions,
        "OKActions": [topic],
    }
    if isinstance(spec.signal, Metric):
        statistic = (
            {"ExtendedStatistic": spec.statistic}
            if spec.statistic.startswith("p")
            else {"Statistic": spec.statistic}
        )
        cloudwatch.put_metric_alarm(
            **common,
            **statistic,
            Namespace=spec.signal.namespace,
            MetricName=spec.signal.name,
            Dimensions=[
                {"Name": k, "Value": v} for k, v in spec.signal.resolved_dimensions(refs).items()
            ],
            Period=spec.period,
        )
        return
    cloudwatch.put_metric_alarm(
        **common,
        Metrics=[
            {"Id": "signal", "Expression": spec.signal.expression, "ReturnData": True},
            *(
                {
                    "Id": source.id,
                    "ReturnData": False,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": source.metric.namespace,
                            "MetricName": source.metric.name,
                            "Dimensions": [
                                {"Name": k, "Value": v}
                                for k, v in source.metric.resolved_dimensions(refs).items()
                            ],
                        },
                        "Period": spec.period,
                        "Stat": source.statistic,
                    },
                }
                for source in spec.signal.inputs
            ),
        ],
    )


def build_monitoring(
    clients: Clients,
    shape: StackShape,
    instance_ids: Mapping[str, str],
    public_dns: str,
    *,
    create: bool = True,
) -> dict[str, Any]:
    """What the monitoring component creates, through the APIs, and its outputs. The stack's
    region is us-east-1 here, so one topic serves every alarm (as the component does there)."""
    prefix = shape.name_prefix
    plan = catalogue(shape)
    sns = clients.client("sns")
    route53 = clients.client("route53")
    topic = f"arn:aws:sns:{REGION}:123456789012:{prefix}-alarms"
    outputs = {
        "alarm_topic_arn": topic,
        "health_check_alarm_topic_arn": topic,
        "dashboard_url": dashboard_url(REGION, prefix),
        "health_check_id": "00000000-0000-0000-0000-000000000000",
    }
    if not create:
        return outputs
    topic = sns.create_topic(Name=f"{prefix}-alarms")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
    health_check = route53.create_health_check(
        CallerReference=prefix,
        HealthCheckConfig={
            "Type": "HTTP",
            "FullyQualifiedDomainName": public_dns,
            "Port": 80,
            "ResourcePath": "/health",
            "RequestInterval": 30,
            "FailureThreshold": 3,
        },
    )["HealthCheck"]["Id"]
    refs: dict[Ref, str] = {HEALTH_CHECK: health_check}
    refs |= {instance_ref(host): i for host, i in instance_ids.items()}
    cloudwatch = clients.client("cloudwatch")
    for spec in plan.alarms:
        put_alarm(cloudwatch, spec, prefix, refs, topic)
    cloudwatch.put_dashboard(
        DashboardName=prefix, DashboardBody=json.dumps(plan.dashboard_body(refs))
    )
    clients.rds.create_event_subscription(
        SubscriptionName=db_event_subscription_name(prefix),
        SnsTopicArn=topic,
        SourceType="db-instance",
        SourceIds=[shape.db_primary, shape.db_replica],
        EventCategories=list(DB_EVENT_CATEGORIES),
        Enabled=True,
    )
    logs = clients.client("logs")
    for source in LOG_SOURCES:
        logs.create_log_group(logGroupName=source.group_name(prefix))
        logs.put_retention_policy(
            logGroupName=source.group_name(prefix), retentionInDays=source.retention_days(30)
        )
    return {
        **outputs,
        "alarm_topic_arn": topic,
        "health_check_alarm_topic_arn": topic,
        "health_check_id": health_check,
    }


@dataclass
class FakeSite:
    """HAProxy in `balance roundrobin` over web nodes that run the demo app, on 127.0.0.1.

    `down` nodes are skipped (HAProxy took them out after failed health checks); `hung` nodes
    take their turn but never answer. A write becomes readable `replication_lag` seconds later,
    never if `lose_writes`."""

    nodes: tuple[str, ...] = ("web-1", "web-2")
    down: frozenset[str] = frozenset()
    hung: frozenset[str] = frozenset()
    replication_lag: float = 0.3
    lose_writes: bool = False
    requests: list[str] = field(default_factory=list)
    _messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _turn: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)

    def next_node(self) -> str:
        with self._lock:
            for _ in self.nodes:
                node = self.nodes[self._turn % len(self.nodes)]
                self._turn += 1
                if node not in self.down:
                    return node
        raise RuntimeError("every node is down")

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]] | None:
        """The answer to one request, or None for a hung node."""
        node = self.next_node()
        self.requests.append(f"{method} {path} -> {node}")
        if node in self.hung:
            self._release.wait(10)
            return None
        route = path.split("?", 1)[0]
        if route == "/health" and method == "GET":
            return 200, {"status": "ok", "served_by": node}
        if route != "/api/messages":
            return 404, {"error": "no such path", "served_by": node}
        if method == "POST":
            text = json.loads(body)["text"]
            with self._lock:
                message = {"id": len(self._messages) + 1, "text": text, "written_by": node}
                if not self.lose_writes:
                    self._messages.append((time.monotonic() + self.replication_lag, message))
            return 201, {"written_to": "primary", "message": message, "served_by": node}
        now = time.monotonic()
        with self._lock:
            visible = [m for ready, m in reversed(self._messages) if ready <= now]
        return 200, {"served_by": node, "read_from": "replica", "messages": visible}

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Run on an ephemeral loopback port; yields the base URL."""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                answer = site.handle(self.command, self.path, self.rfile.read(length))
                if answer is None:
                    self.close_connection = True
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Served-By", str(payload["served_by"]))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            self._release.set()
            server.shutdown()
            server.server_close()
            thread.join(5)
