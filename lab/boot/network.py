"""The boot lab's own bridge and the address of every host and stand-in on it.

The containers and the stand-ins for AWS meet on one Linux bridge with link-local addresses
(169.254.77.0/24), so nothing leaves this machine: the bridge has no uplink, the containers get
no default route, and the only ways out are the stand-ins on the host side. Each stand-in gets
an address of its own, like an AWS endpoint, so it can be made unreachable on its own, from one
host (`lab.boot.faults`), for the failure-injection tests.

The instance metadata service's address, 169.254.169.254, is outside the lab's /24: the
bridge holds it as a /32 on the host side, and each container has an on-link route to it
(`lab.boot.metadata.write_route`), as every EC2 instance reaches it on its own link.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass

from lab.localize import LabError
from lab.processes import program

BRIDGE = "webinfra-boot"
SUBNET = ipaddress.ip_network("169.254.77.0/24")
PREFIX = SUBNET.prefixlen


def _address(host_number: int) -> str:
    return str(SUBNET.network_address + host_number)


GATEWAY = _address(1)
"""The host side: DNS (dnsmasq) and the apt mirror's caching proxy."""
AWS_API = _address(2)
"""S3, SSM and any other AWS API (moto), answering for `*.amazonaws.com`."""
TRUSTSTORE = _address(3)
"""The RDS CA bundle URL, truststore.pki.rds.amazonaws.com."""
SECRET_STORE = _address(4)
"""Secrets Manager's and RDS's APIs (a moto of their own), so they can fail on their own."""
ACME = _address(5)
"""The ACME CA (pebble), with `up --https`: `lab.boot.acme`."""
METADATA = "169.254.169.254"
"""The instance metadata service (`lab.boot.metadata`), as on EC2."""
DB_PRIMARY = _address(51)
DB_REPLICA = _address(52)
DATABASE_1 = _address(61)
DATABASE_2 = _address(62)
"""`dbMode: ec2`: the database hosts' containers (the program's fixed addresses)."""
LOAD_BALANCER_BASE = 7  # load-balancer-i is .(7 + i): load-balancer-1 is 169.254.77.8
WEB_BASE = 10  # web-i is .(10 + i): web-1 is 169.254.77.11
PUBLIC = _address(100)
"""The site's public address, the lab's Elastic IP: no interface holds it; this machine's
connections to it are sent to whichever load balancer holds the Elastic IP in the EC2
stand-in (`lab.boot.elastic_ip`)."""
APT_PROXY_PORT = 13142  # not apt-cacher-ng's usual 3142, which a system service may hold

HOST_SIDE = (GATEWAY, AWS_API, TRUSTSTORE, SECRET_STORE, ACME, DB_PRIMARY, DB_REPLICA)


def load_balancer_address(index: int) -> str:
    """`load-balancer-<index>`'s address (1 or 2)."""
    return _address(LOAD_BALANCER_BASE + index)


def web_node_address(index: int) -> str:
    return _address(WEB_BASE + index)


@dataclass(frozen=True)
class Bridge:
    name: str = BRIDGE

    def _ip(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [program("ip"), *arguments], capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise LabError(f"ip {' '.join(arguments)} failed: {result.stderr.strip()}")
        return result

    def exists(self) -> bool:
        return self._ip("link", "show", "dev", self.name, check=False).returncode == 0

    def create(self) -> None:
        if self.exists():
            raise LabError(
                f"the bridge {self.name} already exists: a boot lab is running (see "
                "`python -m lab.boot status`) or a crashed one left it; `python -m lab.boot "
                "down` removes it"
            )
        self._ip("link", "add", self.name, "type", "bridge")
        for address in HOST_SIDE:
            self.add_address(address)
        self.add_address(METADATA, prefix=32)
        self._ip("link", "set", self.name, "up")

    def add_address(self, address: str, prefix: int = PREFIX) -> None:
        self._ip("address", "add", f"{address}/{prefix}", "dev", self.name)

    def delete(self) -> bool:
        if not self.exists():
            return False
        self._ip("link", "delete", self.name, "type", "bridge")
        return True
