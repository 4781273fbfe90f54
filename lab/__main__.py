"""`python -m lab up|status|down|stop HOST|start HOST`: the architecture on this machine.

See lab/lab.py. Run from the repository root (or through `make lab` / `make lab-down`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lab.lab import Lab
from lab.localize import LabError
from settings import SettingsError


def table(status: dict[str, Any]) -> str:
    rows = [("HOST", "ROLE", "ADDRESS", "STATE", "DETAIL")]
    for host in status["hosts"]:
        rows.append(
            (
                host["name"],
                host["role"],
                f"{host['address']}:{host['port']}",
                host["state"],
                status["details"].get(host["name"], ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev", help="read Pulumi.<stack>.yaml (default: dev)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start every host, then print the URL and status")
    up.add_argument("--web-nodes", type=int, help="override webNodeCount (2 to 20)")
    status = commands.add_parser("status", help="each host, its address, up/down, details")
    status.add_argument("--json", action="store_true", help="machine-readable status")
    commands.add_parser("down", help="stop everything the lab started and remove .lab/")
    for name, text in (
        ("stop", "stop one host (e.g. web-1, db-replica)"),
        ("start", "start one host again"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("host")
        if name == "stop":
            command.add_argument(
                "--kill", action="store_true", help="SIGKILL: a crash, not a shutdown"
            )
    args = parser.parse_args(argv)

    lab = Lab(stack=args.stack)
    try:
        if args.command == "up":
            topology = lab.up(web_nodes=args.web_nodes)
            print(f"The lab is up: {topology.url}\n")
            print(table(lab.status()))
            print(f"\nHAProxy stats: {topology.stats_url}    stop it all: make lab-down")
        elif args.command == "status":
            current = lab.status()
            print(json.dumps(current, indent=2) if args.json else table(current))
        elif args.command == "down":
            stopped = lab.down()
            print(f"stopped {len(stopped)} processes; removed {lab.state}")
        elif args.command == "stop":
            lab.stop_host(args.host, kill=args.kill)
            print(f"{args.host} stopped")
        else:
            lab.start_host(args.host)
            print(f"{args.host} started")
    except (LabError, SettingsError, KeyError) as error:
        print(f"lab: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
