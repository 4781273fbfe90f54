"""`python -m lab.boot.elastic_ip`: the lab's stand-in for AWS moving an Elastic IP.

On AWS the site's public address is an Elastic IP: whichever instance EC2 associates it with
receives its traffic, and the load-balancer pair moves it with `AssociateAddress`
(userdata/scripts/elastic_address.py). In the boot lab, EC2's API is the main moto
(`lab.boot.standins`, `ec2.<region>.amazonaws.com`); what moto cannot do is carry packets. So:

- before any host boots, the lab does what the program does: it launches an instance in moto
  for every host (their ids are what the metadata stand-in and the NoCloud seed hand out, so
  `AssociateAddress` from a host names an instance moto knows), allocates the Elastic IP and
  writes its allocation id to the SSM parameter the pair reads (`settings.address_parameter`);
- this process polls moto's `DescribeAddresses` every `POLL_SECONDS` and keeps one nftables rule,
  in a table of the lab's own, that sends this machine's new connections to the public address
  (`network.PUBLIC`, no interface holds it) to the bridge address of the instance moto says
  holds the Elastic IP; with no holder there is no rule and connections go nowhere. Each swap
  replaces the table in one nft transaction; connections already open keep their destination
  (connection tracking), as on AWS.

It records the current holder in `public-address.json` and every change, timed, in
`public-address.jsonl` (the tests measure failover from it). Its polls are signed with the
lab's own (deployer's) key, so the IAM check leaves them out, as it does the lab's setup.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.boot import faults, network, standins
from lab.boot.pki import CertificateAuthority
from lab.localize import LabError

TABLE = "web_infra_boot_public"
POLL_SECONDS = 0.2
PORTS = (80, 443)
IMAGE_ID = "ami-0bootlab0000000"  # moto accepts any image id unless told to validate them
CONFIG = "elastic-ip.json"
CURRENT = "public-address.json"
HISTORY = "public-address.jsonl"


@dataclass(frozen=True)
class ElasticIp:
    allocation_id: str
    public_ip: str
    """The address moto allocated (the lab serves the site at `network.PUBLIC` instead)."""
    instances: dict[str, str]
    """Host name -> its instance id in moto."""
    addresses: dict[str, str]
    """Host name -> its address on the bridge."""


UNANSWERED_SECONDS = 1
"""How long connection tracking remembers a connection attempt nobody answered: a dead holder's
SYNs must not pin the next connection that reuses the same source port to it (the default
is 120 s)."""


def table() -> str:
    """The table, its DNAT chain empty: created once, when the follower starts. Its timeout
    object stays for the lab's life (deleting it would give the attempts it tracks the default
    timeout back); each swap changes only the DNAT chain (`ruleset`)."""
    return (
        f"table ip {TABLE} {{}}\n"
        f"delete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "  ct timeout unanswered {\n"
        "    protocol tcp;\n"
        "    l3proto ip;\n"
        f"    policy = {{ syn_sent : {UNANSWERED_SECONDS} }}\n"
        "  }\n"
        "  chain raw {\n"
        "    type filter hook output priority raw; policy accept;\n"
        f'    ip daddr {network.PUBLIC} ct timeout set "unanswered"\n'
        "  }\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        "  }\n"
        "}\n"
    )


def ruleset(target: str | None) -> str:
    """One transaction: new connections to the public address go to `target` (None: no rule,
    nowhere)."""
    ports = ", ".join(str(port) for port in PORTS)
    rule = (
        f"add rule ip {TABLE} output ip daddr {network.PUBLIC} tcp dport {{ {ports} }} "
        f"dnat to {target}\n"
        if target
        else ""
    )
    return f"flush chain ip {TABLE} output\n{rule}"


def apply(target: str | None) -> None:
    _nft(ruleset(target))


def clear() -> None:
    """Remove the table; harmless when there is none."""
    _nft(f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")


def _nft(script: str) -> None:
    faults.nft(script, what="public address rule")


# --- what the program does before the hosts boot ------------------------------------------


def create(
    region: str,
    authority: CertificateAuthority,
    *,
    addresses: Mapping[str, str],
    parameter: str,
) -> ElasticIp:
    """An instance in moto per host (`addresses`: host name -> bridge address), the Elastic IP,
    and its allocation id in the SSM parameter `parameter`."""
    ec2 = standins.aws_client("ec2", region, authority)
    instances = {host: launch(region, authority, host) for host in addresses}
    allocated = ec2.allocate_address(Domain="vpc")
    standins.put_parameters(region, authority, {parameter: allocated["AllocationId"]})
    return ElasticIp(allocated["AllocationId"], allocated["PublicIp"], instances, dict(addresses))


def associate(region: str, authority: CertificateAuthority, eip: ElasticIp, host: str) -> None:
    """Associate the address with `host`'s instance (a single load balancer: the program's
    association; a pair moves it itself)."""
    ec2 = standins.aws_client("ec2", region, authority)
    ec2.associate_address(AllocationId=eip.allocation_id, InstanceId=eip.instances[host])


def save(folder: Path, eip: ElasticIp) -> Path:
    path = folder / CONFIG
    temporary = folder / f"{CONFIG}.tmp"
    temporary.write_text(json.dumps(asdict(eip), indent=2))
    temporary.replace(path)  # the follower reads it at every poll
    return path


def launch(region: str, authority: CertificateAuthority, host: str) -> str:
    """A new instance for `host` in moto (a replacement); its id."""
    ec2 = standins.aws_client("ec2", region, authority)
    (instance,) = ec2.run_instances(
        ImageId=IMAGE_ID,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": host}]}],
    )["Instances"]
    return str(instance["InstanceId"])


def load(folder: Path) -> ElasticIp | None:
    path = folder / CONFIG
    return ElasticIp(**json.loads(path.read_text())) if path.exists() else None


def current(folder: Path) -> dict[str, Any]:
    """What the follower routes to now: `holder` (host name or None), `address`, `since`."""
    path = folder / CURRENT
    if not path.exists():
        return {"holder": None, "address": None, "since": None}
    return dict(json.loads(path.read_text()))


def history(folder: Path) -> list[dict[str, Any]]:
    """Every change of holder the follower saw, oldest first."""
    path = folder / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def holder(region: str, authority: CertificateAuthority, eip: ElasticIp) -> str | None:
    """The host whose instance holds the Elastic IP in moto now."""
    ec2 = standins.aws_client("ec2", region, authority)
    return _holder(ec2, eip)


def _holder(ec2: Any, eip: ElasticIp) -> str | None:
    (found,) = ec2.describe_addresses(AllocationIds=[eip.allocation_id])["Addresses"]
    instance = found.get("InstanceId")
    by_instance = {i: host for host, i in eip.instances.items()}
    return by_instance.get(instance) if instance else None


# --- the follower ---------------------------------------------------------------------------


def follow(folder: Path, region: str, authority: CertificateAuthority) -> None:
    """Forever: the rule follows moto's association of the Elastic IP."""
    eip = load(folder)
    if eip is None:
        raise LabError(f"no {CONFIG} in {folder}")
    ec2 = standins.aws_client("ec2", region, authority)
    routed: str | None = None
    _nft(table())
    _record(folder, None, None)
    while True:
        eip = load(folder) or eip  # a replaced host's new instance
        try:
            now = _holder(ec2, eip)
        except Exception as error:  # moto busy or restarting: keep the rule, ask again
            print(f"elastic-ip: DescribeAddresses failed: {error}", flush=True)
            now = routed
        if now != routed:
            target = eip.addresses.get(now) if now else None
            apply(target)
            routed = now
            _record(folder, now, target)
            print(f"elastic-ip: {network.PUBLIC} -> {now} ({target})", flush=True)
        time.sleep(POLL_SECONDS)


def _record(folder: Path, host: str | None, address: str | None) -> None:
    entry = {"holder": host, "address": address, "since": time.time()}
    temporary = folder / f"{CURRENT}.tmp"
    temporary.write_text(json.dumps(entry))
    temporary.replace(folder / CURRENT)
    with (folder / HISTORY).open("a") as output:
        output.write(json.dumps(entry) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--pki", type=Path, required=True)
    args = parser.parse_args()
    follow(args.folder, args.region, CertificateAuthority(args.pki))


if __name__ == "__main__":
    main()
