"""One Pulumi ComponentResource per file, one file per tier of the architecture.

`web_infrastructure.WebInfrastructure` composes them: network, firewall, database, web tier,
load balancer and the private DNS zone that names every host.
"""
