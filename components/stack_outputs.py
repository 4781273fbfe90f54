"""The stack outputs: a contract with every stack and tool that reads this one.

Kept apart from the components (and free of Pulumi imports) so that light consumers such as
`tools.verify` share the one list without loading the AWS provider SDK.
"""

STACK_OUTPUTS = (
    "url",
    "https_enabled",
    "https_url",
    "load_balancer_public_ip",
    "load_balancer_public_dns",
    "web_private_ips",
    "db_primary_endpoint",
    "db_replica_endpoint",
    "vpc_id",
    "public_subnet_ids",
    "private_subnet_ids",
    "security_group_ids",
    "alarm_topic_arn",
    "health_check_alarm_topic_arn",
    "health_check_id",
    "dashboard_url",
)
# `url` is the site's address: https://<domain> when the stack has a domain (its certificate is
# a CA's), else http://<the Elastic IP's DNS name>. `https_enabled` is true with a domain;
# `https_url` always answers over HTTPS, with a self-signed certificate when it is false.
SECURITY_GROUP_KEYS = ("load_balancer", "web", "database")
"""The keys of the `security_group_ids` map."""
