"""The TLS rows of the benchmark: their table rows and HTTPS/HTTP ratios (no lab, no load)."""

from __future__ import annotations

from lab.bench.tls import Row, Tls


def measured(key: str, rps: float, haproxy_us: float, resumed: float | None = None) -> Row:
    return Row(
        key,
        key,
        rps=[rps],
        p50_ms=[1.0],
        p99_ms=[2.0],
        haproxy_us=[haproxy_us],
        resumed=[] if resumed is None else [resumed],
        other_cores=[0.25],
    )


def test_ratios_are_given_for_the_pairs_measured_only() -> None:
    result = Tls([measured("http", 1000, 50), measured("https", 800, 80)])
    assert result.notes() == [
        "tls   https/http = 0.800 of the req/s medians, keep-alive: what encrypting the "
        "requests costs; HAProxy 80 vs 50 us of CPU per request"
    ]


def test_rows_show_cpu_and_the_share_resumed() -> None:
    result = Tls([measured("https-new", 400, 120, resumed=0.97)])
    [row] = result.rows()
    assert row == ["tls   https-new; HAProxy 120 us/req; 97% resumed", "400", "1.00", "2.00", "0"]
    assert result.noise() == [0.25]
    assert result.as_json()["rows"][0]["resumed"] == [0.97]
