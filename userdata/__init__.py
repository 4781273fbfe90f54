"""Cloud-init userdata for every host of web-infra, built as data from pure functions.

Import the modules themselves (`from userdata import cloud_config`). This package imports
nothing on its own: `settings/` reads the metric catalogue (`userdata.metric_catalog`), and
`userdata.cloud_config` reads `settings/`, so importing `cloud_config` here would make
importing the catalogue import settings while settings is still being loaded.
"""
