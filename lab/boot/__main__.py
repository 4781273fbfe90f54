"""`python -m lab.boot up|status|reboot HOST|down`: every host's real cloud-config, booted.

See lab/boot/bootlab.py. Needs root (containers, a bridge, mounts). `make boot` runs `up`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from lab.boot import images, inspect
from lab.boot.bootlab import BootLab
from lab.localize import LabError
from lab.tables import columns, host_table
from settings import SettingsError


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

    return host_table(status["hosts"], detail)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.boot", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev", help="read Pulumi.<stack>.yaml (default: dev)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="boot every host, then print status and timings")
    up.add_argument("--web-nodes", type=int, help="override webNodeCount (2 to 20)")
    up.add_argument(
        "--image",
        choices=images.SUITES,
        default="trixie",
        help="Debian 13 (default; the newer bracket of Ubuntu 24.04) or 12 (the older)",
    )
    status = commands.add_parser("status", help="each host, cloud-init's result, services")
    status.add_argument("--json", action="store_true", help="machine-readable status")
    reboot = commands.add_parser("reboot", help="reboot one host and wait until it is back")
    reboot.add_argument("host")
    commands.add_parser("down", help="remove every container, mount, process and the bridge")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("lab.boot: needs root (containers, a bridge, mounts); try sudo", file=sys.stderr)
        return 1
    lab = BootLab(stack=args.stack)
    try:
        if args.command == "up":
            started = time.monotonic()
            lab.up(web_nodes=args.web_nodes, image=args.image)
            print(f"The boot lab is up in {time.monotonic() - started:.0f} s: {lab.url()}\n")
            print(status_table(lab.status()))
            print()
            print(timings_table(lab))
            print("\nstop it all: make boot-down (python -m lab.boot down)")
        elif args.command == "status":
            current = lab.status()
            print(json.dumps(current, indent=2) if args.json else status_table(current))
        elif args.command == "reboot":
            seconds = lab.reboot(args.host)
            print(f"{args.host} rebooted and booted again in {seconds:.1f} s")
        else:
            removed = lab.down()
            print(f"removed {len(removed)}: {', '.join(removed) or 'nothing was running'}")
    except KeyboardInterrupt:
        print("lab.boot: interrupted; everything it started was removed", file=sys.stderr)
        return 130
    except (LabError, SettingsError) as error:
        print(f"lab.boot: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
