"""The lab's private zone: dnsmasq on the lab's own address, answering from a hosts file.

On AWS, Route 53 answers `web-1.<zone>` from the records the program manages. Here dnsmasq does,
from a hosts file the lab rewrites when a record changes (then SIGHUP: dnsmasq reads it again
without a restart). Names outside the zone are not forwarded anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from lab.processes import program

TTL_SECONDS = 10  # as the program's records


def server_command(
    directory: Path,
    address: str,
    port: int,
    zone: str,
    public_names: Mapping[str, str] | None = None,
) -> list[str]:
    """`public_names`: names outside the zone and their address (the site's domain, which the
    lab's ACME server resolves here as Let's Encrypt resolves it in public DNS)."""
    return [
        program("dnsmasq"),
        "--keep-in-foreground",
        "--log-facility=-",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        f"--listen-address={address}",
        f"--port={port}",
        f"--addn-hosts={hosts_file(directory)}",
        f"--local=/{zone}/",  # the zone is ours: a missing name is NXDOMAIN, never forwarded
        f"--local-ttl={TTL_SECONDS}",
        f"--neg-ttl={TTL_SECONDS}",
        f"--pid-file={directory / 'dnsmasq.pid'}",
        *(["--user=root"] if os.geteuid() == 0 else []),
        *(f"--host-record={name},{ip}" for name, ip in sorted((public_names or {}).items())),
    ]


def hosts_file(directory: Path) -> Path:
    return directory / "zone.hosts"


def write_records(directory: Path, zone: str, records: Mapping[str, str]) -> None:
    """Label -> address; replaces the whole zone atomically (dnsmasq reads it on SIGHUP)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{address} {label}.{zone}" for label, address in sorted(records.items())]
    temporary = hosts_file(directory).with_suffix(".new")
    temporary.write_text("\n".join(lines) + "\n")
    temporary.chmod(0o644)
    temporary.replace(hosts_file(directory))
