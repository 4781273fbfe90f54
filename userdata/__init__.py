"""Cloud-init userdata for every host of web-infra, built as data from pure functions.

Import the modules themselves (`from userdata import cloud_config`). This package imports
nothing on its own: `settings/` reads the metric catalogue (`userdata.metric_catalog`), and
the hosts' builders (`userdata.web_node_config`, `userdata.load_balancer_config`) read
`settings/`, so importing them here would make importing the catalogue import settings while
settings is still being loaded.
"""
