"""`python -m lab.benchmark`: what the architecture does on this machine, as one printed report.

It brings up its own lab ("bench", 127.0.30.0/24; refusing to start when an address is taken,
like `python -m lab up`), seeds it, warms it up, runs every measurement of MEASUREMENTS in turn,
and always tears that lab down again. Each measurement is a module of lab/bench/ whose
docstring says what it measures and how to read it:

1. throughput.py: req/s and latency of a read and a write, direct, through the load balancer
   with one node, and with all nodes; what the load balancer costs.
2. failover.py: a web node killed under load and started again.
3. lag.py: replication lag under a steady stream of writes.
4. changes.py: scale out and in, replace nodes, release new code, replace the load balancer,
   each under a steady stream of requests: failed requests, how long HAProxy took to follow.
5. reuse.py: the app's database connection pool on and off: req/s, p99, new connections,
   TLS handshakes, TIME_WAIT sockets.
6. tls.py: HTTPS next to HTTP through HAProxy, with and without TLS session resumption: what
   TLS costs at the load balancer, as ratios.

The numbers are this machine's, to compare one change with another, not AWS capacity: every
process shares the same cores. The "noise" line says how much CPU other processes on the
machine took meanwhile; when it is high, run again.

Options: `--quick` (one short round, for iterating), `--json PATH` (every raw result),
`--web-nodes N` (instead of the dev stack's webNodeCount).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import pymysql

from lab.bench import changes, failover, lag, reuse, throughput, tls
from lab.bench.config import Config
from lab.bench.machine import machine_facts
from lab.bench.measurement import Context, Measurement, Result
from lab.bench.report import Report, as_json, render
from lab.bench.wrk import READ_PATH
from lab.lab import Lab
from lab.localize import LabError
from lab.topology import Topology
from settings import SettingsError

LAB_NAME = "bench"
MEASUREMENTS = [
    Measurement("throughput", throughput.measure),
    Measurement("failover", failover.measure),
    Measurement("lag", lag.measure),
    Measurement("changes", changes.measure),
    Measurement("connection_reuse", reuse.measure),
    Measurement("tls", tls.measure),
]
"""In the order they run. The changes replace hosts: measurements after them read the lab's
topology anew (Context.topology). The reuse measurement releases the app with a switch of its
own (off when it ends)."""


def seed(topology: Topology, count: int = 20) -> None:
    """A full first page of messages, so every read returns the same 20 rows."""
    for i in range(count):
        request = urllib.request.Request(  # noqa: S310 - the lab's own http URL
            topology.url.rstrip("/") + READ_PATH,
            data=json.dumps({"text": f"benchmark seed {i}"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            if response.status != 201:
                raise LabError(f"seeding failed: HTTP {response.status}")


def run(
    config: Config,
    web_nodes: int | None,
    say: Callable[[str], None],
    measurements: Sequence[Measurement] = MEASUREMENTS,
) -> Report:
    began = time.monotonic()
    machine = machine_facts()
    lab = Lab(LAB_NAME)
    existed = lab.state_file.exists()
    say(f"bringing up the benchmark's lab in {lab.state} ...")
    try:
        topology = lab.up(web_nodes=web_nodes)
    except BaseException:
        if not existed:  # up() stopped what it had started; remove its state folder
            lab.down()
        raise
    results: dict[str, Result] = {}
    try:
        say(f"lab up in {time.monotonic() - began:.1f} s: {topology.url}")
        with tempfile.TemporaryDirectory(prefix="lab-bench-") as folder:
            context = Context(lab, config, Path(folder), say)
            seed(topology)
            lb = topology.url.rstrip("/") + READ_PATH
            context.wrk.run(lb, 2, write=False)  # warm-up: workers, connections, caches
            context.wrk.run(lb, 1, write=True)
            for measurement in measurements:
                results[measurement.name] = measurement.measure(context)
    finally:
        say("tearing the lab down ...")
        lab.down()
    return Report(
        config,
        machine,
        topology.url,
        [h.name for h in topology.web_nodes],
        results,
        time.monotonic() - began,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that `finally` tears the lab down on SIGTERM too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.benchmark", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="one short round, for iterating")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the raw results here")
    parser.add_argument("--web-nodes", type=int, help="override webNodeCount (2 to 20)")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("benchmark: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    config = Config.quick() if args.quick else Config.full()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        report = run(config, args.web_nodes, say)
    except (LabError, SettingsError, pymysql.MySQLError, OSError) as error:
        print(f"benchmark: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark: interrupted; its lab is down", file=sys.stderr)
        return 130
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(as_json(report), indent=2) + "\n")
        print(f"\nraw results: {args.json}")
    return 0
