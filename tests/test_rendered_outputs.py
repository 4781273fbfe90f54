"""What the metric catalogue renders, pinned byte for byte: every alarm's inputs, the dashboard
body, the log groups, the RDS event subscription, the outside-in health check and each host's
CloudWatch agent files, as the whole program registers them under the mocks, for a few stack
shapes.

Guards against a refactoring of the catalogue (or of what reads it) silently changing a
threshold, a dimension, a description or the agent's config: any change shows as a diff against
the golden files in `tests/golden/rendered/`. A deliberate change regenerates them with

    uv run python -m tests.test_rendered_outputs --write

and the diff is reviewed with the change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.mocked_program import run_program

GOLDEN = Path(__file__).parent / "golden" / "rendered"

DOMAIN = {"domain": "www.example.com", "acmeEmail": "ops@example.com"}
# Each node count and each URL scheme at least once; a domain changes only the health check, so
# not every pair is needed (each run of the program takes seconds). Five and twenty nodes need a
# larger database class than the dev stack's (connections).
SHAPES: dict[str, dict[str, Any]] = {
    "2-nodes": {"webNodeCount": 2},
    "2-nodes-domain": {"webNodeCount": 2, **DOMAIN},
    "5-nodes-domain": {"webNodeCount": 5, "dbInstanceClass": "db.t4g.medium", **DOMAIN},
    "20-nodes": {"webNodeCount": 20, "dbInstanceClass": "db.t4g.medium"},
}

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
EVENT_SUBSCRIPTION = "aws:rds/eventSubscription:EventSubscription"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
AGENT_FILES = ("agent.json", "prometheus.yaml", "targets.yaml", "install-cloudwatch-agent")


def render(config: dict[str, Any]) -> str:
    """The catalogue's rendered outputs for a stack with `config`, as stable JSON text.

    Alarms are keyed by their physical name and agent files by host and file, so the text does
    not depend on the order resources are registered in. Strings (the dashboard body, the agent
    files) are kept verbatim, so equal text means byte-identical outputs."""
    run = run_program(config)
    (dashboard,) = run.of_type(DASHBOARD)
    (subscription,) = run.of_type(EVENT_SUBSCRIPTION)
    (health_check,) = run.of_type(HEALTH_CHECK)
    agent_files = {}
    for published in run.of_type(OBJECT):
        key = published.inputs["key"]
        if key.rsplit("/", 1)[-1] in AGENT_FILES:
            # The logical name ends `<host>-<file>` (`hosts-` for one shared by every host).
            agent_files[published.name.split("-artifacts-", 1)[1]] = published.inputs["content"]
    document = {
        "alarms": {a.inputs["name"]: a.inputs for a in run.of_type(ALARM)},
        "dashboard": dashboard.inputs,
        "log_groups": {g.inputs["name"]: g.inputs for g in run.of_type(LOG_GROUP)},
        "db_event_subscription": subscription.inputs,
        "health_check": health_check.inputs,
        "agent_files": agent_files,
    }
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("shape", SHAPES)
def test_the_rendered_alarms_dashboard_and_agent_configs_are_unchanged(shape: str) -> None:
    """Fails on any change to an alarm, the dashboard, a log group or an agent file."""
    golden = GOLDEN / f"{shape}.json"
    expected = golden.read_text(encoding="utf-8")
    actual = render(SHAPES[shape])
    assert actual == expected, (
        f"{shape}: the rendered outputs differ from {golden.relative_to(Path.cwd())}; if the "
        "change is intended, regenerate with `uv run python -m tests.test_rendered_outputs "
        "--write` and review the diff"
    )


def test_the_golden_files_cover_every_alarm_and_host() -> None:
    """Guards the golden files themselves: a capture that missed the alarms or the agent
    files would pin nothing."""
    document = json.loads((GOLDEN / "20-nodes.json").read_text(encoding="utf-8"))
    # 2: the pair's Elastic IP; 22 * 5: each host's (the pair's two and 20 web nodes)
    assert len(document["alarms"]) == 1 + 4 + 2 + 20 + 22 * 5 + 9
    agents = [name for name in document["agent_files"] if name.endswith("-agent.json")]
    hosts = {name.removesuffix("-agent.json") for name in agents}
    assert hosts == {"load-balancer-1", "load-balancer-2", *(f"web-{i}" for i in range(1, 21))}
    assert json.loads(document["dashboard"]["dashboardBody"])["widgets"]


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m tests.test_rendered_outputs --write", file=sys.stderr)
        return 2
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for shape, config in SHAPES.items():
        (GOLDEN / f"{shape}.json").write_text(render(config), encoding="utf-8")
        print(f"wrote {GOLDEN / shape}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
