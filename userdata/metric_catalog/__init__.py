"""Every metric this stack watches, where it comes from, and when it pages: one catalogue, kept
as data (`table/`, a module per tier) and filled in for one stack by `catalogue(shape)`
(`expand.py`).

The alarms and the dashboard (`components/monitoring.py`), the CloudWatch agent's config
(`userdata/cloudwatch_agent.py`), the settings' checks (`settings/`: log retention, the
database's connection limit) and the post-deploy check (`tools.verify`) all read it, so no
metric name, dimension or threshold is written twice.

It lives under `userdata/` because it is at the bottom of the layering: it imports nothing from
this project, so `settings/` and the userdata builders import it without importing
`components/` (which imports them). Pure: no Pulumi, no AWS calls. Values AWS assigns while
the stack is created (instance ids, the health check's id) appear as `Ref`s and are resolved
late: by the component with Pulumi outputs, by `tools.verify` with what it finds in the account.
"""

from userdata.metric_catalog.expand import (
    Catalogue,
    Widget,
    catalogue,
    log_sources,
    metrics_log_source,
    stack_quantities,
    stack_values,
)
from userdata.metric_catalog.model import (
    BACKEND,
    COMPARISON_SIGNS,
    DATA_VOLUME_FILESYSTEM_TYPE,
    DATA_VOLUME_MOUNT,
    DATABASE,
    FRONTEND,
    GIB,
    HEALTH_CHECK,
    HEALTH_CHECK_REGION,
    LOAD_BALANCER,
    LOG_RETENTION_DAYS_ALLOWED,
    METRICS_LOG_RETENTION_DAYS,
    ROLES,
    ROOT_FILESYSTEM_TYPE,
    WEB,
    AlarmSpec,
    DimensionValue,
    Expression,
    LogSource,
    Metric,
    MetricInput,
    Ref,
    Source,
    StackShape,
    dashboard_name,
    dashboard_url,
    db_event_subscription_name,
    default_namespace,
    estimated_max_connections,
    instance_ref,
    rds_class_memory_gib,
    role_of,
)
from userdata.metric_catalog.table import DB_EVENT_CATEGORIES, LOG_SOURCES

__all__ = [
    "BACKEND",
    "COMPARISON_SIGNS",
    "DATABASE",
    "DATA_VOLUME_FILESYSTEM_TYPE",
    "DATA_VOLUME_MOUNT",
    "DB_EVENT_CATEGORIES",
    "FRONTEND",
    "GIB",
    "HEALTH_CHECK",
    "HEALTH_CHECK_REGION",
    "LOAD_BALANCER",
    "LOG_RETENTION_DAYS_ALLOWED",
    "LOG_SOURCES",
    "METRICS_LOG_RETENTION_DAYS",
    "ROLES",
    "ROOT_FILESYSTEM_TYPE",
    "WEB",
    "AlarmSpec",
    "Catalogue",
    "DimensionValue",
    "Expression",
    "LogSource",
    "Metric",
    "MetricInput",
    "Ref",
    "Source",
    "StackShape",
    "Widget",
    "catalogue",
    "dashboard_name",
    "dashboard_url",
    "db_event_subscription_name",
    "default_namespace",
    "estimated_max_connections",
    "instance_ref",
    "log_sources",
    "metrics_log_source",
    "rds_class_memory_gib",
    "role_of",
    "stack_quantities",
    "stack_values",
]
