"""The site's records, seen from outside: Route 53's health check of the site's health path
(its metrics exist only in us-east-1)."""

from __future__ import annotations

from userdata.metric_catalog.model import (
    HEALTH_CHECK_REGION,
    AlarmGroup,
    AlarmRecord,
    Line,
    MetricRecord,
    Source,
    WidgetRecord,
)

METRICS = (
    MetricRecord("site-health", Source.AWS, "HealthCheckStatus",
                 (("HealthCheckId", "@health-check"),), "site healthy (Route 53 checkers)",
                 namespace="AWS/Route53", region=HEALTH_CHECK_REGION),
)  # fmt: skip


ALARMS = (
    AlarmGroup("stack", (
        AlarmRecord(
            key="site-health-check",
            tier="outside-in",
            severity="critical",
            summary="The site's health path fails from the internet (Route 53 health checkers).",
            why=(
                "The one signal that sees what users see: DNS, the Elastic IP, the load "
                "balancer and a web node answering together. Checkers probe every 30 s and need "
                "3 failures; 2 unhealthy minutes rule out a checker's network blip. No data "
                "means the check itself is gone, which is as bad."
            ),
            signal="site-health", statistic="Minimum", period=60,
            evaluation_periods=2, datapoints_to_alarm=2,
            comparison="LessThanThreshold", threshold=1, treat_missing_data="breaching",
        ),
    )),
)  # fmt: skip


WIDGETS = (
    WidgetRecord("Outside-in: site healthy (1) or not (0)", (Line("site-health"),), "Minimum",
                 60, thresholds=("site-health-check",), y_min=0),
)  # fmt: skip
