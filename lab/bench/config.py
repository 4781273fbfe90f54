"""The benchmark's settings: a full run, and a quick one for iterating (`--quick`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    threads: int
    """wrk threads."""
    connections: int
    """wrk connections, kept open (HTTP keep-alive) for the whole run."""
    read_seconds: int
    write_seconds: int
    rounds: int
    """Throughput rounds (a/b/c each once per round)."""
    failover_seconds: int
    kill_at_seconds: float
    lag_rate: int
    """Rows per second written to the primary for the replication lag."""
    lag_seconds: float

    @staticmethod
    def full() -> Config:
        # wrk: 2 threads for the 2 cores; 16 connections = one node's gunicorn capacity
        # (2 workers x 8 threads), so a lone node is busy but its requests do not queue.
        return Config(2, 16, 8, 4, 3, 12, 2.5, 200, 10.0)

    @staticmethod
    def quick() -> Config:
        return Config(2, 16, 3, 2, 1, 10, 2.0, 200, 4.0)
