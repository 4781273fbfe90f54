"""Post-deploy check: does the running stack match the web-infra design?

    pulumi stack output --json | python -m tools.verify --outputs -
    python -m tools.verify --outputs outputs.json [--json] [--skip-http] [--skip-aws]

`pulumi up` succeeding proves that AWS accepted the resources, not that the result is the
design: a node can be stopped, a security group can have been widened by hand, the replica can
be missing, HAProxy can be sending every request to one node. This command reads the stack's
outputs and checks the live stack, one line per check, and exits 1 if any check fails (2 for
a usage error: a bad argument, or outputs JSON that cannot be read or lacks keys, naming them).

The checks live one concern per module: `outputs` (reading the stack's outputs), `aws` (EC2,
security groups, RDS), `monitoring` (against the metric catalogue), `http_checks`,
`certificate`, `report` (the table) and `cli` (arguments, exit status); this package exports
what other code uses.

AWS (boto3 with the standard environment: credentials, region, `AWS_ENDPOINT_URL`; the region
falls back to the one in the RDS endpoint):
  * the load balancer: the instance holding `load_balancer_public_ip` in the VPC is running,
    tagged `Role=load-balancer`, in a public subnet, in the load balancer group, and its public
    DNS name is `load_balancer_public_dns`;
  * the web tier: as many `Role=web` instances in the VPC as `web_private_ips` (at least 2);
    each node (found by private IP, in node order web-1, web-2, ...) is running, tagged
    `Role=web` and `Name=*-web-N`, in a private subnet, in the web group, with no public IP; the
    nodes span at least two availability zones (so one AZ outage leaves the site up);
  * security groups: the database group admits only tcp/3306 and only from the web group (no
    CIDR, no other port); none of the three groups opens anything but tcp/80 and tcp/443 to
    0.0.0.0/0 or ::/0;
  * the database: the primary (identifier = endpoint host before the first dot) is an available
    MySQL instance with backups (retention > 0 days), encrypted storage, not publicly
    accessible, in the database group, at the endpoint the outputs give; the replica likewise
    (without the backup rule); the replica's source is the primary and the primary lists it;
  * monitoring (the metric catalogue, `userdata/metric_catalog/`, says what to expect for
    this stack's node count, DB class and storage): the alarm topic and the health-check
    alarms' topic exist and someone confirmed a subscription; the Route 53 health check
    requests the load balancer's health path; every expected alarm exists, one line each, with
    its metric, dimensions, statistic, threshold and window, and an action to its topic (the
    system-check alarms also the EC2 recover action); every alarm has data and none fires; the
    dashboard shows exactly the catalogue's lines; RDS events go to the topic; every log group
    exists with a retention.

HTTP (urllib, short timeouts; `--skip-http` for offline use), through `url`:
  * `GET /health` answers 200;
  * round robin: 2*N consecutive `GET /api/messages` are all answered 200 with `X-Served-By`,
    every node web-1..web-N answers at least once and no node answers two requests in a row
    (what HAProxy's `balance roundrobin` gives on a quiet site; heavy concurrent traffic can
    make this line fail spuriously: run it again);
  * a message written with `POST /api/messages` is read back with `GET /api/messages` within
    `--read-back-seconds` (replication to the replica is asynchronous). This leaves one
    message, `tools.verify <time> <token>`, in the database.
"""

from tools.verify.aws import (
    aws_session,
    check_database,
    check_load_balancer,
    check_security_groups,
    check_web_nodes,
)
from tools.verify.certificate import CERTIFICATE_MIN_DAYS, check_certificate
from tools.verify.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, check_aws, main, run_checks
from tools.verify.http_checks import (
    HttpFailure,
    HttpResponse,
    check_health,
    check_http,
    check_round_robin,
    check_write_read,
    http_request,
)
from tools.verify.monitoring import check_monitoring, dashboard_lines
from tools.verify.outputs import (
    REQUIRED_KEYS,
    Endpoint,
    MonitoringOutputs,
    Outputs,
    OutputsError,
    parse_outputs,
)
from tools.verify.report import Check, render_table, shorten, summary

__all__ = [
    "CERTIFICATE_MIN_DAYS",
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "REQUIRED_KEYS",
    "Check",
    "Endpoint",
    "HttpFailure",
    "HttpResponse",
    "MonitoringOutputs",
    "Outputs",
    "OutputsError",
    "aws_session",
    "check_aws",
    "check_certificate",
    "check_database",
    "check_health",
    "check_http",
    "check_load_balancer",
    "check_monitoring",
    "check_round_robin",
    "check_security_groups",
    "check_web_nodes",
    "check_write_read",
    "dashboard_lines",
    "http_request",
    "main",
    "parse_outputs",
    "render_table",
    "run_checks",
    "shorten",
    "summary",
]
