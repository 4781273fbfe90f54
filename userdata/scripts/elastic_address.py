"""Keep the site's Elastic IP on whichever load balancer of the pair keepalived made master.

The pair runs keepalived with unicast VRRP (a VPC carries no multicast) and no virtual address
of its own: the address the pair shares is the Elastic IP, and only EC2's API can move it. This
script is keepalived's side of that, in four commands:

- `configure` (first boot, before keepalived starts): resolve this host's and its peer's names
  in the private zone, find the interface that holds this host's address, and write
  keepalived's config from the template cloud-init wrote (`${interface}`, `${self_address}`,
  `${peer_address}`). Names, not addresses, so the labs boot the same userdata as AWS.
- `notify` (keepalived's notify script: `INSTANCE <name> <state> <priority>`): write the new
  state where `hold` reads it. Nothing slow runs inside keepalived.
- `hold` (a service of its own): while this host is master, make sure the Elastic IP is
  associated with this instance; at once after becoming master, then every few seconds. The
  periodic check is what ends a split brain: two masters may both associate the address, but
  once VRRP hears both again one steps down, and the one left master takes the address back
  if the other took it last. With `--namespace`, master or not, it also tells CloudWatch
  whether EC2 says this instance holds the address (`ElasticIpHeld`, 1 or 0, once with the
  dimension `Node` and once without, the pair's series) once every clock minute and at once
  when that changes, and counts each time it took the address from the other instance
  (`ElasticIpTakeovers`, the pair's: a failover, not the first association of an address nobody
  held). A failing PutMetricData is logged and never stops the holding.
- `release` (when keepalived stops, as the host shuts down or is replaced): wait until the peer
  holds the address, so HAProxy (stopped after keepalived) serves until then.

The allocation id comes from an SSM parameter the program writes (`--parameter`), the instance
id from cloud-init's record of the instance, the node name from `install --self-name`. Runs
with the system Python and Ubuntu's python3-boto3.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

INSTANCE_ID_FILE = "/var/lib/cloud/data/instance-id"
STATE_FILE = "/run/web-infra/vrrp-state"
KEEPALIVED_CONFIG = "/etc/keepalived/keepalived.conf"
KEEPALIVED_TEMPLATE = "/etc/keepalived/keepalived.conf.template"
"""Where cloud-init writes the template (`cloud_config.KEEPALIVED_TEMPLATE`, the same path)."""
HOLD_UNIT = "/etc/systemd/system/elastic-address.service"
HANDOVER_DROP_IN = "/etc/systemd/system/keepalived.service.d/handover.conf"
RELEASE_TIMEOUT_SECONDS = 15  # how long a stopping holder waits for its peer to take over
MASTER = "MASTER"
POLL_SECONDS = 0.2
RECHECK_SECONDS = 5.0
"""How often a master checks that it still holds the address (ends a split brain)."""
HELD_METRIC = "ElasticIpHeld"
TAKEOVERS_METRIC = "ElasticIpTakeovers"
NODE_DIMENSION = "Node"
REPORT_SECONDS = 60
"""A minute's bucket in CloudWatch: one report each clock minute, whatever the holder does."""


def log(message: str) -> None:
    print(f"elastic-address: {message}", file=sys.stderr, flush=True)


# --- configure -------------------------------------------------------------------------------


def resolve(name: str, timeout: float, interval: float = 2.0) -> str:
    """The IPv4 address of `name`, asking again until `timeout` (its record may lag the host)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0])
        except OSError as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"elastic-address: {name} does not resolve: {error}") from None
            time.sleep(interval)


def interface_with(address: str, ip_json: list[dict[str, Any]]) -> str:
    """The interface that holds `address`, from `ip -json -4 address show`."""
    for link in ip_json:
        for info in link.get("addr_info", []):
            if info.get("local") == address:
                return str(link["ifname"])
    raise SystemExit(f"elastic-address: no interface holds {address}, this host's address")


def keepalived_config(template: str, *, interface: str, self_address: str, peer: str) -> str:
    for value in (self_address, peer):
        ipaddress.IPv4Address(value)  # only addresses reach the config
    return string.Template(template).substitute(
        interface=interface, self_address=self_address, peer_address=peer
    )


def hold_unit(command: str) -> str:
    return f"""[Unit]
Description=Keep the site's Elastic IP on this host while keepalived makes it master
# Stopped before keepalived at shutdown: once keepalived resigns, nothing here claims again.
After=network-online.target keepalived.service
Wants=network-online.target

[Service]
ExecStart={command} hold
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def handover_drop_in(command: str) -> str:
    return f"""[Unit]
# Stopped before HAProxy at shutdown: HAProxy serves until the peer holds the address.
After=haproxy.service

[Service]
# Stopping keepalived makes it resign (priority 0), so the peer takes over at once; then wait
# until the peer holds the Elastic IP before HAProxy stops behind it.
ExecStopPost={command} release --timeout {RELEASE_TIMEOUT_SECONDS}
TimeoutStopSec={RELEASE_TIMEOUT_SECONDS * 2}
"""


def install(args: argparse.Namespace) -> int:
    self_address = resolve(args.self_name, args.timeout)
    peer = resolve(args.peer_name, args.timeout)
    listing = subprocess.run(
        ["/usr/sbin/ip", "-json", "-4", "address", "show"],
        capture_output=True,
        text=True,
        check=True,
    )
    interface = interface_with(self_address, json.loads(listing.stdout))
    with open(args.template) as f:
        text = keepalived_config(
            f.read(), interface=interface, self_address=self_address, peer=peer
        )
    write_atomically(KEEPALIVED_CONFIG, text)
    log(f"VRRP on {interface} from {self_address} to {peer}")
    command = (
        f"/usr/bin/python3 {os.path.abspath(__file__)} --parameter {args.parameter} "
        f"--region {args.region}"
    )
    if args.namespace:
        # The node is the host name, the first label of its record in the private zone.
        node = args.self_name.split(".", 1)[0]
        command += f" --namespace {args.namespace} --node {node}"
    write_atomically(HOLD_UNIT, hold_unit(command))
    write_atomically(HANDOVER_DROP_IN, handover_drop_in(command))
    units = [os.path.basename(HOLD_UNIT), "keepalived.service"]
    for step in (
        ["/usr/sbin/keepalived", "--config-test", f"--use-file={KEEPALIVED_CONFIG}"],
        ["/usr/bin/systemctl", "daemon-reload"],
        ["/usr/bin/systemctl", "enable", *units],
        ["/usr/bin/systemctl", "restart", *units],
    ):
        subprocess.run(step, check=True)  # noqa: S603 - fixed programs, our own arguments
    return 0


# --- notify ----------------------------------------------------------------------------------


def write_atomically(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def notify(args: argparse.Namespace) -> int:
    # keepalived: <INSTANCE|GROUP> <name> <MASTER|BACKUP|FAULT|STOP> <priority>
    state = args.fields[2] if len(args.fields) >= 3 else "UNKNOWN"
    write_atomically(args.state_file, state + "\n")
    log(f"VRRP state {state}")
    return 0


def read_state(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "BACKUP"


# --- hold and release -----------------------------------------------------------------------


class Address:
    """The Elastic IP, as EC2 sees it, from this instance's point of view."""

    def __init__(self, ec2: Any, allocation_id: str, instance_id: str) -> None:
        self.ec2, self.allocation_id, self.instance_id = ec2, allocation_id, instance_id

    def holder(self) -> str | None:
        found = self.ec2.describe_addresses(AllocationIds=[self.allocation_id])["Addresses"]
        return (found[0].get("InstanceId") or None) if found else None

    def claim(self) -> Claim:
        """Associate the address with this instance unless it already is."""
        before = self.holder()
        if before == self.instance_id:
            return Claim(moved=False, taken_from=None)
        self.ec2.associate_address(
            AllocationId=self.allocation_id, InstanceId=self.instance_id, AllowReassociation=True
        )
        return Claim(moved=True, taken_from=before)


class Claim(NamedTuple):
    moved: bool
    """The address was not on this instance and now is."""
    taken_from: str | None
    """The instance that held it before (a takeover); None if it was on none or already here."""


class Reporter:
    """What `hold` tells CloudWatch: whether EC2 says this instance holds the address (in the
    first check of each clock minute, so every minute's bucket has one report from each host,
    and at once when it changes), and each takeover. A failed report is logged; a takeover it
    carried is sent with the next one."""

    def __init__(self, cloudwatch: Any, namespace: str, node: str) -> None:
        self.cloudwatch, self.namespace, self.node = cloudwatch, namespace, node
        self.reported: bool | None = None
        self.minute: int | None = None
        self.takeovers = 0

    def due(self, held: bool) -> bool:
        """A new clock minute, a change, or a takeover not yet sent."""
        return held != self.reported or self.takeovers > 0 or self.minute != minute_now()

    def report(self, held: bool) -> bool:
        """`ElasticIpHeld` per node (who holds it) and for the pair (its Maximum over a minute is
        1 if either held it), and the takeovers not yet sent, for the pair."""
        now = datetime.datetime.now(datetime.UTC)
        node = [{"Name": NODE_DIMENSION, "Value": self.node}]
        value = 1.0 if held else 0.0
        data: list[dict[str, Any]] = [
            {"MetricName": HELD_METRIC, "Dimensions": dimensions, "Timestamp": now,
             "Value": value, "Unit": "None"}
            for dimensions in (node, [])
        ]  # fmt: skip
        if self.takeovers:
            data.append(
                {"MetricName": TAKEOVERS_METRIC, "Dimensions": [], "Timestamp": now,
                 "Value": float(self.takeovers), "Unit": "Count"}
            )  # fmt: skip
        try:
            self.cloudwatch.put_metric_data(Namespace=self.namespace, MetricData=data)
        except Exception as error:  # logged; holding the address matters more than reporting
            log(f"reporting to CloudWatch failed: {error}")
            return False
        self.reported, self.minute, self.takeovers = held, minute_now(), 0
        return True


def minute_now() -> int:
    return int(time.time() // REPORT_SECONDS)


def client(service: str, region: str) -> Any:
    import boto3  # noqa: PLC0415 - the host's python3-boto3
    from botocore.config import Config  # noqa: PLC0415

    config = Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 2})
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client(service, region_name=region, endpoint_url=endpoint, config=config)


def connect(args: argparse.Namespace) -> Address:
    ssm, ec2 = client("ssm", args.region), client("ec2", args.region)
    allocation_id = ssm.get_parameter(Name=args.parameter)["Parameter"]["Value"]
    with open(args.instance_id_file) as f:
        instance_id = f.read().strip()
    return Address(ec2, allocation_id, instance_id)


def retrying(what: str, action: Callable[[], Any], stop: Callable[[], bool]) -> Any:
    """`action()` until it succeeds or `stop()`; AWS may refuse for a while (the role's policy
    that names this instance is created just after the instance)."""
    delay = 0.5
    while not stop():
        try:
            return action()
        except Exception as error:  # logged and retried: the next attempt may succeed
            log(f"{what} failed: {error}")
            time.sleep(delay)
            delay = min(delay * 2, RECHECK_SECONDS)
    return None


def hold(args: argparse.Namespace, *, rounds: int | None = None) -> int:
    """Hold the address while master, and report who holds it (with `--namespace`). `rounds`
    bounds the loop (tests); the service runs on."""
    address: Address | None = None
    reporter = (
        Reporter(client("cloudwatch", args.region), args.namespace, args.node)
        if args.namespace
        else None
    )
    was_master, checked_at, done = False, 0.0, 0

    def finished() -> bool:
        return rounds is not None and done >= rounds

    while not finished():
        is_master = read_state(args.state_file) == MASTER
        due = is_master != was_master or time.monotonic() - checked_at >= RECHECK_SECONDS
        held: bool | None = None  # what EC2 said this round, if it was asked
        if is_master and due:
            address = address or retrying("reading the address", lambda: connect(args), finished)
            if address is not None:
                claim = retrying("claiming the address", address.claim, finished)
                if claim is not None:
                    held = True
                    if claim.moved:
                        log(f"{address.allocation_id} now on {address.instance_id}")
                    if claim.taken_from and reporter is not None:
                        reporter.takeovers += 1
                checked_at = time.monotonic()
        elif reporter is not None and due:
            # A backup asks as often, so that it reports at once when the address left it.
            address, held = observe(args, address)
            checked_at = time.monotonic()
        if reporter is not None and held is not None and reporter.due(held):
            reporter.report(held)
        was_master = is_master
        done += 1
        time.sleep(POLL_SECONDS)
    return 0


def observe(
    args: argparse.Namespace, address: Address | None
) -> tuple[Address | None, bool | None]:
    """Whether EC2 says this instance holds the address, in one try; None (logged) if AWS does
    not answer: the next check asks again."""
    try:
        address = address or connect(args)
        return address, address.holder() == address.instance_id
    except Exception as error:  # logged; holding matters more than reporting
        log(f"reading who holds the address failed: {error}")
        return address, None


def release(args: argparse.Namespace) -> int:
    """Wait (at most `--timeout`) until the address is on another instance or on none."""
    deadline = time.monotonic() + args.timeout
    address = retrying("reading the address", lambda: connect(args), lambda: False)
    while time.monotonic() < deadline:
        try:
            if address.holder() != address.instance_id:
                log("the peer holds the address")
                return 0
        except Exception as error:  # keep waiting: HAProxy serves meanwhile
            log(f"checking the address failed: {error}")
        time.sleep(POLL_SECONDS)
    log(f"the address is still here after {args.timeout:g} s; stopping anyway")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parameter", help="the SSM parameter with the allocation id")
    parser.add_argument("--region")
    parser.add_argument("--state-file", default=STATE_FILE)
    parser.add_argument("--instance-id-file", default=INSTANCE_ID_FILE)
    parser.add_argument("--namespace", help="report who holds the address to this namespace")
    parser.add_argument("--node", default=socket.gethostname(), help="the Node dimension")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("install")
    setup.add_argument("--template", default=KEEPALIVED_TEMPLATE)
    setup.add_argument("--self-name", required=True)
    setup.add_argument("--peer-name", required=True)
    setup.add_argument("--timeout", type=float, default=600.0)
    note = commands.add_parser("notify")
    note.add_argument("fields", nargs="*")
    commands.add_parser("hold")
    commands.add_parser("release").add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.command != "notify" and not (args.parameter and args.region):
        parser.error(f"{args.command} needs --parameter and --region")
    handlers = {"install": install, "notify": notify, "hold": hold, "release": release}
    return int(handlers[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
