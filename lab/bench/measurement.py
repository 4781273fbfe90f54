"""What a measurement is: what the runner hands it (Context) and what it hands back (Result).

The runner (lab/bench/runner.py) brings the benchmark's lab up and calls each entry of its
MEASUREMENTS list in turn. A measurement is a module with a `measure(context) -> Result`
function; its result renders itself (rows for the report's main table, lines under it) and
serialises itself for `--json`. Adding one is a new module and one line in that list; nothing
else in the benchmark needs to know about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lab.bench.config import Config
from lab.bench.cpu import CpuTimes, cpu_times
from lab.bench.wrk import Wrk
from lab.lab import Lab
from lab.topology import Topology

Row = list[str]
"""A row of the main table: scenario, req/s, p50 ms, p99 ms, errors."""


class Context:
    """The running lab and what every measurement uses with it."""

    def __init__(self, lab: Lab, config: Config, folder: Path, say: Callable[[str], None]) -> None:
        self.lab = lab
        self.config = config
        self.say = say
        """Progress, to stderr (the report goes to stdout)."""
        self.stand_ins = stand_in_sessions(lab)
        self.wrk = Wrk(config, folder, self.cpu_times)

    def topology(self) -> Topology:
        """The lab as it is now: a measurement that replaces hosts moves their addresses."""
        return self.lab.topology()

    def cpu_times(self) -> CpuTimes:
        return cpu_times(self.lab.state, self.stand_ins)


def stand_in_sessions(lab: Lab) -> dict[int, str]:
    """The AWS stand-in's session (its PID: the lab starts each daemon in a session of its
    own). Its command line does not name the lab's state folder, so without this its CPU, busy
    while hosts start, would count as other processes' (noise)."""
    spec = lab.instance("aws").daemons[0]
    return {spec.pid: spec.name} if spec.pid else {}


class Result(Protocol):
    def rows(self) -> list[Row]:
        """Its rows of the main table (may be none)."""

    def notes(self) -> list[str]:
        """Its lines under the main table: targets and verdicts, details, tables of its own."""

    def noise(self) -> list[float]:
        """Cores other processes used during each of its runs (the report's "noise" line)."""

    def as_json(self) -> dict[str, Any]:
        """Every raw number, for `--json`."""


@dataclass(frozen=True)
class Measurement:
    name: str
    """Its key in `--json`'s output."""
    measure: Callable[[Context], Result]
