"""WSGI entry point of the lab's OpenStack API services under gunicorn (services' venv).

oslo.config parses sys.argv when a service reads its configuration, and under gunicorn
that is gunicorn's own command line: hide it. Which application to load comes from
FAULTLINE_WSGI_MODULE (e.g. `keystone.wsgi.api`); the config files from the service's own
OS_<SERVICE>_CONFIG_DIR / _FILES variables.

With FAULTLINE_CONFIGURE_MAPPERS set, SQLAlchemy's mappers are configured right after the
app is loaded: Neutron reads backref attributes such as `Port.port_forwardings` on the class
before its first query would configure them (AttributeError on the first port listing).
"""

import importlib
import os
import sys

sys.argv = sys.argv[:1]
application = importlib.import_module(os.environ["FAULTLINE_WSGI_MODULE"]).application

if os.environ.get("FAULTLINE_CONFIGURE_MAPPERS"):
    importlib.import_module("sqlalchemy.orm").configure_mappers()
