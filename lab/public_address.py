"""The lab's stand-in for the Elastic IP: a public address that moves between load balancers.

On AWS the Elastic IP association moves the public address to a new load balancer once its
HAProxy serves. Here an nftables rule in a table of the lab's own rewrites connections to the
public address to the serving load balancer's address; moving it is one atomic rule swap, and
connections already open keep going to the old load balancer (connection tracking), which then
finishes them and stops. Needs root (and `nft`); without them the first load balancer binds the
public address itself and cannot be replaced.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from lab.localize import LabError
from lab.processes import find_program


def available() -> bool:
    return os.geteuid() == 0 and find_program("nft") is not None


def _table(lab: str) -> str:
    return f"web_infra_lab_{lab.replace('-', '_')}"


def _nft(script: str) -> None:
    nft = find_program("nft")
    if nft is None:
        raise LabError("nft is not installed; run `make setup`")
    result = subprocess.run(  # noqa: S603 - the lab's own fixed rules
        [nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=10, check=False
    )
    if result.returncode != 0:
        raise LabError(f"nft refused the lab's rules: {result.stderr.strip()}")


def associate(lab: str, public: str, ports: Sequence[int], target: str) -> None:
    """Send new connections to `public` on `ports` to `target`, same port, in one transaction."""
    table = _table(lab)
    port_set = ", ".join(str(port) for port in ports)
    _nft(
        f"table ip {table} {{}}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        f"  chain output {{\n"
        f"    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {public} tcp dport {{ {port_set} }} dnat to {target}\n"
        f"  }}\n"
        f"}}\n"
    )


def release(lab: str) -> None:
    table = _table(lab)
    _nft(f"table ip {table} {{}}\ndelete table ip {table}\n")
