"""Results the benchmark's tests build reports from (no lab, no load)."""

from __future__ import annotations

from lab.bench.wrk import WrkResult


def wrk_result(
    rps: float,
    *,
    p50: float = 5.0,
    p99: float = 20.0,
    errors: int = 0,
    other_cores: float | None = None,
) -> WrkResult:
    return WrkResult(
        requests=int(rps * 8),
        seconds=8.0,
        rps=rps,
        p50_ms=p50,
        p90_ms=p50 * 2,
        p99_ms=p99,
        mean_ms=p50,
        max_ms=p99 * 2,
        non_2xx=errors,
        socket_errors=0,
        other_cores=other_cores,
    )


def line_with(text: str, start: str) -> str:
    """The first line of `text` that starts with `start` (StopIteration: none)."""
    return next(line for line in text.splitlines() if line.startswith(start))
