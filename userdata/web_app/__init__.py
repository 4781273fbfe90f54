"""Demo app of web-infra: writes go to the MySQL primary, reads to the replica.

How it degrades: README, "The app". Needs Ubuntu's python3-pymysql and python3-boto3 only.
It connects as its own MySQL user, whose password it reads from its own secret; the database
bootstrap (components/functions/app_db_user.py) made that user and the tables, so the app runs
no DDL and has no right to.

A package, so that each concern has its own module: `routes` (the HTTP answers),
`request_input` (what a client may send), `database` (which server answers what, and the SQL),
`database_host` (one server's pool, bulkhead and breaker), `credentials` and `failures`. Its
modules import each other relatively: the package ships whole to /opt/web-app/web_app/ on the
web nodes, where gunicorn loads `web_app:application`, and the tests import it from here.
"""

import json
import logging
import os

from .credentials import credentials_from
from .database import Database
from .routes import App


def create_app(config_path):
    with open(config_path) as f:
        config = json.load(f)
    database = Database(config["database"], credentials_from(config["credentials"]))
    return App(config["node_name"], database)


if os.environ.get("WEB_APP_CONFIG"):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    application = create_app(os.environ["WEB_APP_CONFIG"])
    # Each gunicorn worker imports this after the fork: one upkeep thread each.
    application.db.start_upkeep()
