"""`python -m lab up|status|down|stop|failover|scale|replace|release|...`: the lab, locally.

See lab/lab.py (and the modules it names). Run from the repository root (or through
`make lab` / `make lab-down`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from lab.lab import Lab
from lab.localize import LabError
from lab.processes import poll
from lab.state import Event
from lab.tables import host_table
from lab.topology import LAB_NETWORKS, Topology
from settings import SettingsError
from settings.errors import shown
from settings.web_tier import MAX_WEB_NODES, MIN_WEB_NODES
from tools import arguments
from tools.ami import is_file
from userdata import web_node_config

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m lab"
# A host of the lab: web-N, load-balancer-N (load-balancer: the one holding the public
# address), db-primary, db-replica, ... (checked by the lab).
host_name = arguments.matching(
    re.compile(r"[a-z][a-z0-9-]{0,39}"),
    "a host name such as web-1, load-balancer-2 or db-replica",
)
web_nodes = arguments.whole_number(MIN_WEB_NODES, MAX_WEB_NODES)

CERTIFICATE_TIMEOUT_SECONDS = 60.0  # certbot and pebble take a few seconds in the lab


def table(status: dict[str, Any]) -> str:
    return host_table(status["hosts"], lambda host: status["details"].get(host["name"], ""))


def up_message(topology: Topology, status: dict[str, Any], *, certified: bool) -> str:
    """Where the site is, and a command that reaches it when pasted in any folder here (its
    name resolves only in the lab's DNS, and its certificate needs the lab's CA)."""
    if topology.settings.domain is None:
        site = f"The lab is up: {topology.url} (and {topology.https_url}, self-signed)"
    else:
        site = f"The lab is up: {topology.https_url} ({topology.url} redirects there)"
        if not certified:
            site = (
                f"The lab is up: {topology.https_url}, but its certificate from the lab's CA "
                "is not there yet: until it is, a self-signed one serves and HTTP is not "
                "redirected (see the load balancer's site-certificate.log)"
            )
    return f"{site}\nFrom any folder on this machine:\n\n  {status['curl']}\n"


def drained(events: list[Event]) -> list[str]:
    """One line per node a scale-in removed: when HAProxy let go of it and when it stopped,
    counted from the removal of its record."""
    lines = []
    for stopped in (e for e in events if e.what == "retired"):
        mine = {e.what: e.at for e in events if e.instance_id == stopped.instance_id}
        if "drained" in mine:  # its record was removed before it was stopped
            removed = mine["switched"]
            lines.append(
                f"{stopped.host}: record removed; HAProxy let go after "
                f"{mine['followed'] - removed:.1f} s, its sessions ended after "
                f"{mine['drained'] - removed:.1f} s, stopped after {stopped.at - removed:.1f} s"
            )
    return lines


def parser() -> argparse.ArgumentParser:
    main = arguments.ArgumentParser(prog=PROG, description=(__doc__ or "").splitlines()[0])
    main.add_argument(
        "--stack",
        default="dev",
        type=arguments.stack_name,
        help="read Pulumi.<stack>.yaml (default: dev)",
    )
    main.add_argument(
        "--lab",
        default="dev",
        choices=sorted(LAB_NETWORKS),
        help="which lab (each has its own loopback network; default: dev)",
    )
    main.add_argument(
        "--ready-timeout",
        type=arguments.seconds(1, 3600),
        default=60.0,
        help="seconds a new host may take to report that it serves (default: 60)",
    )
    commands = main.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start every host, then print the URL and status")
    up.add_argument("--web-nodes", type=web_nodes, help="override webNodeCount (2 to 20)")
    up.add_argument(
        "--no-https",
        action="store_true",
        help="no domain: HTTPS with a self-signed certificate only (default: the lab's domain "
        "with a certificate from its ACME server, pebble)",
    )
    status = commands.add_parser("status", help="each host, its address, up/down, details")
    status.add_argument("--json", action="store_true", help="machine-readable status")
    commands.add_parser("down", help="stop everything the lab started and remove its state")
    stop = commands.add_parser("stop", help="stop one host (e.g. web-1, db-replica)")
    stop.add_argument("host", type=host_name)
    stop.add_argument("--kill", action="store_true", help="SIGKILL: a crash, not a shutdown")
    start = commands.add_parser("start", help="start a stopped host again")
    start.add_argument("host", type=host_name)
    freeze = commands.add_parser("freeze", help="hang a host (SIGSTOP): it keeps its sockets")
    freeze.add_argument("host", type=host_name)
    thaw = commands.add_parser("thaw", help="let a frozen host go on (SIGCONT)")
    thaw.add_argument("host", type=host_name)
    failover = commands.add_parser(
        "failover",
        help="move the public address to the other load balancer (keepalived's job on AWS)",
    )
    failover.add_argument(
        "to", nargs="?", type=host_name, help="the load balancer to move it to (default: the other)"
    )
    scale = commands.add_parser(
        "scale", help="change the number of web nodes (DNS and nodes only, as pulumi up does)"
    )
    scale.add_argument("web_nodes", type=web_nodes)
    replace = commands.add_parser(
        "replace", help="a new instance of a host on a new address, switched to once it serves"
    )
    replace.add_argument(
        "host",
        type=host_name,
        help="web-N, load-balancer-N, or load-balancer (the one holding the public address)",
    )
    release = commands.add_parser(
        "release", help="roll out app code to every web node, canary first, in batches"
    )
    release.add_argument(
        "app", type=Path, help="the app's package folder (a copy of userdata/web_app, changed)"
    )
    release.add_argument(
        "--batch-size",
        type=arguments.whole_number(1, MAX_WEB_NODES),
        help="nodes per batch after the canary",
    )
    return main


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with arguments that argparse cannot check alone: files that must exist."""
    stack_file = ROOT / f"Pulumi.{args.stack}.yaml"
    if args.command == "up" and not stack_file.is_file():
        return f"argument --stack: there is no {stack_file.name}; pass the name of a stack file"
    if args.command == "release" and not is_file(args.app / "__init__.py"):
        return (
            f"argument app: {shown(str(args.app))} is not the app's package folder (it has "
            "no __init__.py); pass a folder like userdata/web_app"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = usage_problem(args)
    if problem:
        return arguments.usage_error(PROG, problem)
    lab = Lab(args.lab, stack=args.stack)
    lab.ready_timeout = args.ready_timeout
    try:
        run(lab, args)
    except SettingsError as error:  # the stack file: the user's input
        print(f"{PROG}: {error}", file=sys.stderr)
        return arguments.USAGE_ERROR
    except (LabError, KeyError, OSError) as error:
        print(f"lab: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 1
    return 0


def one_host(lab: Lab, command: str, host: str) -> str:
    """start, freeze or thaw one host; what to print."""
    if command == "start":
        lab.start_host(host)
        return f"{host} started"
    if command == "freeze":
        lab.freeze(host)
        return f"{host} frozen; `python -m lab thaw {host}` lets it go on"
    lab.thaw(host)
    return f"{host} thawed"


def run(lab: Lab, args: argparse.Namespace) -> None:
    """Carry out one command on the lab."""
    if args.command == "up":
        lab.https = not args.no_https
        topology = lab.up(web_nodes=args.web_nodes)
        # Wait for the CA's certificate, so the line printed below works when pasted.
        certified = topology.settings.domain is not None and (
            poll(lab.serves_its_certificate, CERTIFICATE_TIMEOUT_SECONDS, step=0.2) is not None
        )
        current = lab.status()
        print(up_message(topology, current, certified=certified))
        print(table(current))
        print(f"\nHAProxy stats: {topology.stats_url}    stop it all: make lab-down")
    elif args.command == "status":
        current = lab.status()
        print(json.dumps(current, indent=2) if args.json else table(current))
    elif args.command == "down":
        stopped = lab.down()
        print(f"stopped {len(stopped)} processes; removed {lab.state}")
    elif args.command == "stop":
        moved_to = lab.stop_host(args.host, kill=args.kill)
        print(f"{args.host} stopped")
        if moved_to:
            print(f"the public address moved to {moved_to}")
    elif args.command in ("start", "freeze", "thaw"):
        print(one_host(lab, args.command, args.host))
    elif args.command == "failover":
        holder = lab.fail_over(args.to)
        print(f"the public address moved to {holder}\n")
        print(table(lab.status()))
    elif args.command == "scale":
        lab.scale(args.web_nodes)
        print(f"{args.web_nodes} web nodes serve")
        for line in drained(lab.events):
            print(line)
        print()
        print(table(lab.status()))
    elif args.command == "replace":
        lab.replace(args.host)
        print(f"{args.host} replaced\n")
        print(table(lab.status()))
    else:
        lab.release(web_node_config.app_files(args.app), batch_size=args.batch_size)
        print(f"released {args.app} to every web node\n")
        print(table(lab.status()))


if __name__ == "__main__":
    sys.exit(main())
