"""Test doubles for tools.verify: a web-infra stack built with boto3 (run it under moto's
`mock_aws`) and a loopback HTTP server that plays HAProxy + the web nodes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

REGION = "us-east-1"
PREFIX = "web-infra-dev"
AMI = "ami-12c6146b"  # any id will do for moto
WORLD = {"IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}


def _tags(resource_type: str, name: str, role: str | None = None) -> list[dict[str, Any]]:
    tags = [{"Key": "Name", "Value": name}]
    if role:
        tags.append({"Key": "Role", "Value": role})
    return [{"ResourceType": resource_type, "Tags": tags}]


class Clients:
    """boto3 clients made once (making one costs ~0.15 s), handed to tools.verify as a session."""

    def __init__(self) -> None:
        self.ec2: Any = boto3.client("ec2", region_name=REGION)
        self.rds: Any = boto3.client("rds", region_name=REGION)

    def client(self, service: str, **_options: Any) -> Any:
        return {"ec2": self.ec2, "rds": self.rds}[service]


def build_stack(
    clients: Clients,
    prefix: str = PREFIX,
    *,
    web_azs: tuple[str, ...] = ("us-east-1a", "us-east-1b"),
    replica: bool = True,
) -> dict[str, Any]:
    """Create the design with boto3 and return what `pulumi stack output --json` would print.

    Stacks with different prefixes live side by side in one (moto) account, each in its own VPC.
    One web node per entry of `web_azs`, each in the private subnet of that AZ; `replica=False`
    leaves the read replica out (the outputs still name it)."""
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
    ec2.authorize_security_group_ingress(
        GroupId=web_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 80,
                "ToPort": 80,
                "UserIdGroupPairs": [{"GroupId": lb_sg}],
            }
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=db_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 3306,
                "ToPort": 3306,
                "UserIdGroupPairs": [{"GroupId": web_sg}],
            }
        ],
    )

    lb = ec2.run_instances(
        ImageId=AMI,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=public[zones[0]],
        SecurityGroupIds=[lb_sg],
        TagSpecifications=_tags("instance", f"{prefix}-load-balancer", "load-balancer"),
    )["Instances"][0]
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(InstanceId=lb["InstanceId"], AllocationId=eip["AllocationId"])
    lb = ec2.describe_instances(InstanceIds=[lb["InstanceId"]])["Reservations"][0]["Instances"][0]

    web_ips = []
    for n, zone in enumerate(web_azs, start=1):
        node = ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            SubnetId=private[zone],
            SecurityGroupIds=[web_sg],
            TagSpecifications=_tags("instance", f"{prefix}-web-{n}", "web"),
        )["Instances"][0]
        web_ips.append(node["PrivateIpAddress"])

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

    return {
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
