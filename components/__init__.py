"""One Pulumi ComponentResource per file, one file per tier of the architecture.

`web_infrastructure.WebInfrastructure` composes them: network, firewall, database, web tier,
load balancer, the private DNS zone that names every host, monitoring. `rendered_hosts` renders
every host's userdata without Pulumi (for the program and the labs alike).
"""
