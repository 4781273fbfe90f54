"""Cloud-init userdata for every host of web-infra, built as data from pure functions."""

from userdata.cloud_config import (
    AppDatabase,
    ReadinessReport,
    load_balancer_cloud_config,
    parse,
    render,
    web_node_cloud_config,
)

__all__ = [
    "AppDatabase",
    "ReadinessReport",
    "load_balancer_cloud_config",
    "parse",
    "render",
    "web_node_cloud_config",
]
