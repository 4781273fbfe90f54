"""The lab honours webNodeCount: three nodes come up and share the load in strict rotation."""

from __future__ import annotations

import urllib.request

from system_tools import require

from lab.lab import REQUIRED, Lab


def test_three_web_nodes_share_the_load_in_turn() -> None:
    for tool in REQUIRED:
        require(tool)
    lab = Lab("test-scale")
    with lab.running(web_nodes=3) as topology:
        assert [h.name for h in topology.web_nodes] == ["web-1", "web-2", "web-3"]
        assert lab.rotation(topology) == {"web-1": "UP", "web-2": "UP", "web-3": "UP"}
        served = []
        for _ in range(6):
            with urllib.request.urlopen(f"{topology.url}health", timeout=5) as response:
                served.append(response.headers["X-Served-By"])
        assert sorted(served) == ["web-1", "web-1", "web-2", "web-2", "web-3", "web-3"]
        assert served[:3] == served[3:], f"not a fixed rotation: {served}"
    assert not lab.state.exists()
