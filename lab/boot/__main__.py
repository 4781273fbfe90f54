"""`python -m lab.boot up|status|reboot|kill|start|replace HOST|down`: every host's real
cloud-config, booted.

See lab/boot/bootlab.py (up) and lab/boot/__init__.py (the other modules). Needs root
(containers, a bridge, mounts). `make boot` runs `up`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from lab.boot import images, inspect
from lab.boot.bootlab import BootLab
from lab.localize import LabError
from lab.tables import columns, host_table
from settings import SettingsError
from settings.loader import MARIADB_MODES
from settings.web_tier import MAX_WEB_NODES, MIN_WEB_NODES
from tools import arguments

ROOT = Path(__file__).resolve().parents[2]
PROG = "python -m lab.boot"


def status_table(status: dict[str, Any]) -> str:
    def detail(host: dict[str, Any]) -> str:
        result = host.get("cloud_init")
        if result is None:
            return str(status["replication"]) if host["name"] == "db-replica" else ""
        problems = len(result["errors"]) + len(result["log_problems"])
        return f"cloud-init {result['status']}, {problems} errors/warnings; " + ", ".join(
            f"{service.removesuffix('.service')} {state}"
            for service, state in host["services"].items()
        )

    table = host_table(status["hosts"], detail)
    public = status.get("public_address")
    if public:
        table += f"\npublic address {public['ip']}: Elastic IP held by {public['holder']}"
    return table


def timings_table(lab: BootLab) -> str:
    """Per host: time to boot, cloud-init's own total, and its slowest modules."""
    state = lab.load()
    rows: list[tuple[str, ...]] = [
        ("HOST", "BOOTED IN", "CLOUD-INIT", "SLOWEST CLOUD-INIT MODULES (first boot)")
    ]
    for record in state.hosts:
        container = lab.container(record)
        times = inspect.boot_times(container)
        slowest = ", ".join(f"{name} {seconds:.1f} s" for seconds, name in times.slowest)
        total = f"{times.cloud_init_seconds:.1f} s" if times.cloud_init_seconds else "?"
        booted = f"{record.booted_seconds:.1f} s" if record.booted_seconds else "?"
        rows.append((record.name, booted, total, slowest))
    image = state.image_timing
    if image.get("built") is not None:
        how = f"built in {image['built']:.0f} s"
    elif image.get("extracted") is not None:
        how = f"extracted from the cache in {image['extracted']:.1f} s"
    else:
        how = "already extracted in the cache"
    versions = images.package_versions(
        lab.container(state.hosts[0]).root, ("systemd", "cloud-init", "haproxy")
    )
    web = [h for h in state.hosts if h.role == "web"]
    if web:
        versions |= images.package_versions(
            lab.container(web[0]).root,
            (
                "nginx",
                "python3",
                "python3-boto3",
                "python3-botocore",
                "gunicorn",
                "prometheus-nginx-exporter",
            ),
        )
    listed = ", ".join(f"{name} {version}" for name, version in versions.items())
    return f"{columns(rows)}\nimage: {state.image}, {how}; booted: {listed}"


HOST_COMMANDS = ("reboot", "kill", "start", "replace")


def host_command(lab: BootLab, command: str, host: str) -> str:
    """Run one of `HOST_COMMANDS` on `host`; what to print."""
    if command == "reboot":
        return f"{host} rebooted and booted again in {lab.reboot(host):.1f} s"
    if command == "kill":
        lab.kill(host)
        return f"{host} was killed (no shutdown); `{PROG} start {host}` boots it"
    if command == "start":
        return f"{host} booted again in {lab.start(host):.1f} s"
    seconds = lab.replace(host)
    return f"{host} replaced by {lab.load().host(host).instance_id} in {seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = arguments.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stack",
        default="dev",
        type=arguments.stack_name,
        help="read Pulumi.<stack>.yaml (default: dev)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="boot every host, then print status and timings")
    up.add_argument(
        "--https",
        action="store_true",
        help="the site has the lab's domain and an ACME CA (pebble): certbot gets its certificate",
    )
    up.add_argument(
        "--web-nodes",
        type=arguments.whole_number(MIN_WEB_NODES, MAX_WEB_NODES),
        help="override webNodeCount (2 to 20)",
    )
    up.add_argument(
        "--image",
        choices=images.SUITES,
        help="Debian 13 (default; the newer bracket of Ubuntu 24.04) or 12 (the older; the "
        "default with --db-mode ec2 or colocated)",
    )
    up.add_argument(
        "--db-mode",
        choices=("rds", "ec2", "colocated"),
        help="override dbMode: ec2 boots the database hosts from their userdata, colocated "
        "boots web-1 and web-2 running the primary and the replica",
    )
    status = commands.add_parser("status", help="each host, cloud-init's result, services")
    status.add_argument("--json", action="store_true", help="machine-readable status")
    reboot = commands.add_parser("reboot", help="reboot one host and wait until it is back")
    host_name = arguments.matching(
        re.compile(r"[a-z][a-z0-9-]{0,39}"), "a host name such as web-1 or load-balancer-1"
    )
    reboot.add_argument("host", type=host_name)
    for name, what in (
        ("kill", "power one host off abruptly (SIGKILL, no shutdown), as an instance that dies"),
        ("start", "boot a killed host again from its own disk and wait until it has booted"),
        (
            "replace",
            "terminate a host (clean shutdown) and boot a new instance from the same userdata",
        ),
    ):
        commands.add_parser(name, help=what).add_argument("host", type=host_name)
    commands.add_parser(
        "down",
        help="remove this boot lab's containers, mounts and processes (the one of the state "
        "folder, $WEB_INFRA_BOOT_STATE), and the bridge unless another boot lab still uses it",
    )
    args = parser.parse_args(argv)
    if args.command == "up" and not (ROOT / f"Pulumi.{args.stack}.yaml").is_file():
        return arguments.usage_error(
            PROG, f"argument --stack: there is no Pulumi.{args.stack}.yaml; pass a stack's name"
        )

    if os.geteuid() != 0:
        print("lab.boot: needs root (containers, a bridge, mounts); try sudo", file=sys.stderr)
        return 1
    lab = BootLab(stack=args.stack)
    try:
        if args.command == "up":
            started = time.monotonic()
            image = args.image or ("bookworm" if args.db_mode in MARIADB_MODES else "trixie")
            lab.up(web_nodes=args.web_nodes, image=image, https=args.https, db_mode=args.db_mode)
            print(f"The boot lab is up in {time.monotonic() - started:.0f} s: {lab.url()}\n")
            print(status_table(lab.status()))
            print()
            print(timings_table(lab))
            print("\nstop it all: make boot-down (python -m lab.boot down)")
        elif args.command == "status":
            current = lab.status()
            print(json.dumps(current, indent=2) if args.json else status_table(current))
        elif args.command in HOST_COMMANDS:
            print(host_command(lab, args.command, args.host))
        else:
            removed = lab.down()
            print(f"removed {len(removed)}: {', '.join(removed) or 'nothing was running'}")
    except KeyboardInterrupt:
        print("lab.boot: interrupted; everything it started was removed", file=sys.stderr)
        return 130
    except SettingsError as error:  # the stack file: the user's input
        print(f"{PROG}: {error}", file=sys.stderr)
        return arguments.USAGE_ERROR
    except LabError as error:
        print(f"lab.boot: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
