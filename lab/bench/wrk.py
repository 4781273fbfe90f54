"""wrk, the load generator: its Lua hook, the parsing of what it prints, and running it.

A `done()` hook makes wrk print its summary as one JSON line after MARKER, so nothing depends on
wrk's human-readable text. Each run is bracketed by two CPU samples (lab/bench/cpu.py), so every
result also says where the CPU went and how much other processes took meanwhile.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.bench.config import Config
from lab.bench.cpu import CpuTimes, cpu_used, other_cores
from lab.localize import LabError

MARKER = "BENCH_JSON "
READ_PATH = "/api/messages"
"""GET reads the newest messages (from the replica), POST writes one (to the primary)."""
WRITE_BODY = '{"text": "benchmark write"}'

# wrk calls done() once, after every thread has finished; latencies are in microseconds.
DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,' ..
    '"p99_us":%.0f,"mean_us":%.1f,"max_us":%.0f}\\n',
    "MARKER", summary.duration, summary.requests, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
""".replace("MARKER", MARKER)
POST_REQUEST = f"""
wrk.method = "POST"
wrk.body = '{WRITE_BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    """connect + read + write + timeout."""
    other_cores: float | None = None
    """CPU cores other processes on the machine used meanwhile (not from wrk: measured)."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds per lab daemon and BENCHMARK_CPU meanwhile (not from wrk: measured)."""

    def cpu_us_per_request(self, *names: str) -> float | None:
        """Microseconds of CPU per request by the named parts (all parts when none named)."""
        if not self.requests or not self.cpu_s:
            return None
        used = sum(v for k, v in self.cpu_s.items() if not names or k in names)
        return used / self.requests * 1e6

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def parse_wrk(output: str) -> WrkResult:
    """The result the done() hook printed as one `BENCH_JSON {...}` line of wrk's output."""
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if len(lines) != 1:
        raise ValueError(f"expected one {MARKER.strip()} line in wrk's output, found {len(lines)}")
    raw = json.loads(lines[0].removeprefix(MARKER))
    seconds = raw["duration_us"] / 1e6
    return WrkResult(
        requests=int(raw["requests"]),
        seconds=seconds,
        rps=raw["requests"] / seconds if seconds > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        non_2xx=int(raw["status"]),
        socket_errors=int(raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]),
    )


@dataclass(frozen=True)
class Summary:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def summarize(runs: Sequence[WrkResult]) -> Summary:
    """Medians over the rounds; errors and requests summed."""
    return Summary(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        requests=sum(r.requests for r in runs),
    )


class Wrk:
    """wrk with the benchmark's settings; its Lua scripts in a temporary folder."""

    def __init__(self, config: Config, folder: Path, sample: Callable[[], CpuTimes]) -> None:
        self.config = config
        self.sample = sample
        self.read_script = folder / "read.lua"
        self.read_script.write_text(DONE_HOOK)
        self.write_script = folder / "write.lua"
        self.write_script.write_text(POST_REQUEST + DONE_HOOK)

    def command(
        self, url: str, seconds: float, *, write: bool, headers: Sequence[str] = ()
    ) -> list[str]:
        """`headers`: extra request headers, "Name: value" each."""
        script = self.write_script if write else self.read_script
        return [
            shutil.which("wrk") or "wrk",
            *(part for header in headers for part in ("-H", header)),
            f"-t{self.config.threads}",
            f"-c{self.config.connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "2s",
            "--latency",
            "-s",
            str(script),
            url,
        ]

    def run(
        self, url: str, seconds: float, *, write: bool, headers: Sequence[str] = ()
    ) -> WrkResult:
        before = self.sample()
        result = subprocess.run(  # noqa: S603 - wrk against the lab's loopback addresses
            self.command(url, seconds, write=write, headers=headers),
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
        after = self.sample()
        return dataclasses.replace(
            parse_wrk(result.stdout),
            other_cores=round(other_cores(before, after), 3),
            cpu_s=cpu_used(before, after),
        )
