"""The printed report: the run's facts, one main table, then each measurement's own lines."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from lab.bench.config import Config
from lab.bench.measurement import Result
from lab.bench.table import format_table

MAIN_HEADER = ["scenario", "req/s", "p50 ms", "p99 ms", "errors"]


@dataclass
class Report:
    config: Config
    machine: dict[str, str]
    topology_url: str
    web_nodes: list[str]
    results: dict[str, Result]
    """Measurement name -> its result, in the order they ran."""
    seconds: float = 0.0


def render(report: Report) -> str:
    config, machine = report.config, report.machine
    out = [
        f"web-infra lab benchmark: {len(report.web_nodes)} web nodes, {report.seconds:.0f} s",
        f"machine:  {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, "
        f"kernel {machine['kernel']}",
        f"versions: HAProxy {machine['haproxy']}, Nginx {machine['nginx']}, "
        f"MariaDB {machine['mariadb']}, gunicorn {machine['gunicorn']}, wrk {machine['wrk']}, "
        f"Python {machine['python']}, PyMySQL {machine['pymysql']}",
        f"wrk:      -t{config.threads} -c{config.connections} --timeout 2s; reads "
        f"{config.read_seconds} s, writes {config.write_seconds} s per run; {config.rounds} "
        "round(s), a/b/c order rotated per round; medians (errors: summed)",
        "",
    ]
    rows = [row for result in report.results.values() for row in result.rows()]
    if rows:
        out.append(format_table(MAIN_HEADER, rows))
    others = [value for result in report.results.values() for value in result.noise()]
    if others:
        out.append(
            f"noise:    other processes on this machine used {statistics.median(others):.2f} "
            f"cores (median; max {max(others):.2f}) of {machine['cores']} during the "
            "measurements: the higher, the less the numbers mean"
        )
    out.append("")
    for result in report.results.values():
        out.extend(result.notes())
    return "\n".join(out)


def as_json(report: Report) -> dict[str, Any]:
    return {
        "config": asdict(report.config),
        "machine": report.machine,
        "topology_url": report.topology_url,
        "web_nodes": report.web_nodes,
        **{name: result.as_json() for name, result in report.results.items()},
        "seconds": report.seconds,
    }
