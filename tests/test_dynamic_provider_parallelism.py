"""How many gate and drain calls Pulumi runs at once, measured on its own provider process.

The engine itself runs resource operations unbounded by default (`pulumi up --parallel`), but
every Python dynamic resource of a stack is served by one process, `python -m pulumi.dynamic`,
whose gRPC server has a pool of 4 threads (pulumi 3.272, `pulumi/dynamic/__main__.py`): a 5th
call waits until one of the 4 returns. The README's rollout section states what that costs;
this test measures it on the real process with this project's drain provider, and fails if a
new SDK changes the figure (then the README must change too).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc  # type: ignore[import-untyped]
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.by_value import by_value
from components.dns_propagation import DrainProvider

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 1.0  # each drain's wait


def drain_properties(host: str) -> object:
    props = {
        "host": host,
        "address": "10.20.128.12",
        "seconds": SECONDS,
        "__provider": serialize_provider(by_value(DrainProvider)()),
    }
    return asyncio.run(rpc.serialize_properties(props, {}))


def test_the_dynamic_provider_process_runs_four_calls_at_once() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "pulumi.dynamic"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = provider_pb2_grpc.ResourceProviderStub(channel)

        def delete(host: str) -> None:
            request = provider_pb2.DeleteRequest(
                id=f"drain-{host}", urn=f"urn:{host}", properties=drain_properties(host)
            )
            stub.Delete(request, timeout=60)

        def wall_time(calls: int) -> float:
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=calls) as pool:
                list(pool.map(delete, [f"web-{i}" for i in range(1, calls + 1)]))
            return time.monotonic() - started

        wall_time(1)  # the process loads the provider once
        four, eight, twelve = wall_time(4), wall_time(8), wall_time(12)
        print(f"wall time: 4 calls {four:.2f} s, 8 calls {eight:.2f} s, 12 calls {twelve:.2f} s")
        assert four < 2 * SECONDS, "4 calls run at once"
        assert 2 * SECONDS <= eight < 3 * SECONDS, "the 5th to 8th wait for the first 4"
        assert 3 * SECONDS <= twelve < 4 * SECONDS, "in waves of 4"
        channel.close()
    finally:
        server.kill()
        server.wait()
