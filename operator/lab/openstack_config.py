"""Configuration files of the `openstack` add-on's services (pure text, no I/O).

Every listener is on 127.0.0.1. Heartbeats are short (report_interval 2 s,
service_down_time 8 s) so a dead nova-compute shows `down` within seconds. Keystone caches
in-process and hashes passwords with the cheapest bcrypt cost (a lab, not a cloud).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ADDRESS = "127.0.0.1"
REGION = "RegionOne"
REPORT_INTERVAL = 2
SERVICE_DOWN_TIME = 8
DB_USER = "faultline"
RABBIT_USER = "faultline"
SERVICE_PROJECT = "service"
#: The service users (all in project `service`, role admin).
SERVICE_USERS = ("nova", "placement", "glance", "neutron")
#: name -> (service type, path of the endpoint after host:port)
ENDPOINTS = {
    "keystone": ("identity", "/v3"),
    "placement": ("placement", ""),
    "nova": ("compute", "/v2.1"),
    "glance": ("image", ""),
    "neutron": ("network", ""),
}
DATABASES = ("keystone", "placement", "nova_api", "nova_cell0", "nova_cell1", "glance", "neutron")


@dataclass(frozen=True)
class Ports:
    epmd: int
    rabbit: int
    rabbit_dist: int
    mariadb: int
    keystone: int
    placement: int
    nova: int
    glance: int
    neutron: int

    def url(self, service: str) -> str:
        port = getattr(self, service)
        return f"http://{ADDRESS}:{port}{ENDPOINTS[service][1]}"


@dataclass(frozen=True)
class Secrets:
    admin: str
    service: str
    db: str
    rabbit: str


@dataclass(frozen=True)
class Paths:
    directory: Path  # the add-on dir
    venv: Path

    @property
    def etc(self) -> Path:
        return self.directory / "etc"

    @property
    def var(self) -> Path:
        return self.directory / "var"

    def conf(self, service: str) -> Path:
        name = "glance-api" if service == "glance" else service  # the name Glance's app reads
        return self.etc / service / f"{name}.conf"


def db_url(ports: Ports, secrets: Secrets, database: str) -> str:
    return (
        f"mysql+pymysql://{DB_USER}:{secrets.db}@{ADDRESS}:{ports.mariadb}/{database}?charset=utf8"
    )


def transport_url(ports: Ports, secrets: Secrets) -> str:
    return f"rabbit://{RABBIT_USER}:{secrets.rabbit}@{ADDRESS}:{ports.rabbit}/"


# Cell mappings are stored templated: every Nova service fills in scheme, credentials, host
# and port from its own [database] connection / transport_url, so the DB snapshot taken
# after the schema syncs stays valid with other ports and passwords.
CELL_DB_TEMPLATE = "{scheme}://{username}:{password}@{hostname}:{port}/%s?{query}"
CELL_TRANSPORT_TEMPLATE = "{scheme}://{username}:{password}@{hostname}:{port}/"


def rabbitmq_conf(ports: Ports, secrets: Secrets, log_dir: Path) -> str:
    return f"""\
# Faultline lab: RabbitMQ of the openstack add-on (loopback only).
listeners.tcp.1 = {ADDRESS}:{ports.rabbit}
listeners.ssl = none
loopback_users = none
default_user = {RABBIT_USER}
default_pass = {secrets.rabbit}
default_vhost = /
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
log.file.level = warning
log.dir = {log_dir}
log.console = false
disk_free_limit.absolute = 50MB
"""


def mariadb_args(paths: Paths, ports: Ports) -> list[str]:
    data = paths.var / "mariadb"
    return [
        "--no-defaults",
        f"--datadir={data}",
        f"--socket={paths.var / 'mariadb.sock'}",
        f"--pid-file={paths.var / 'mariadb.pid'}",
        f"--port={ports.mariadb}",
        f"--bind-address={ADDRESS}",
        "--user=root",
        "--skip-name-resolve",
        "--skip-log-bin",
        "--max-connections=2000",
        "--innodb-buffer-pool-size=256M",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--innodb-log-file-size=48M",
        "--sync-binlog=0",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci",
        "--wait-timeout=28800",
    ]


def _authtoken(ports: Ports, secrets: Secrets, user: str) -> str:
    return f"""\
[keystone_authtoken]
www_authenticate_uri = {ports.url("keystone")}
auth_url = {ports.url("keystone")}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = {SERVICE_PROJECT}
username = {user}
password = {secrets.service}
region_name = {REGION}
"""


def _auth_section(section: str, ports: Ports, secrets: Secrets, user: str) -> str:
    return f"""\
[{section}]
auth_type = password
auth_url = {ports.url("keystone")}
project_domain_name = Default
user_domain_name = Default
project_name = {SERVICE_PROJECT}
username = {user}
password = {secrets.service}
region_name = {REGION}
valid_interfaces = public
"""


def keystone_conf(paths: Paths, ports: Ports, secrets: Secrets) -> str:
    keys = paths.etc / "keystone"
    return f"""\
# Faultline lab: Keystone (openstack add-on). Holds passwords: mode 0600.
[DEFAULT]
use_stderr = true
[database]
connection = {db_url(ports, secrets, "keystone")}
[token]
provider = fernet
[fernet_tokens]
key_repository = {keys / "fernet-keys"}
[fernet_receipts]
key_repository = {keys / "fernet-keys"}
[credential]
key_repository = {keys / "credential-keys"}
[cache]
enabled = true
backend = oslo_cache.dict
[identity]
password_hash_rounds = 4
[oslo_policy]
enforce_new_defaults = true
"""


def placement_conf(paths: Paths, ports: Ports, secrets: Secrets) -> str:
    return f"""\
# Faultline lab: Placement (openstack add-on). Holds passwords: mode 0600.
[DEFAULT]
use_stderr = true
[api]
auth_strategy = keystone
[placement_database]
connection = {db_url(ports, secrets, "placement")}
{_authtoken(ports, secrets, "placement")}"""


def nova_conf(paths: Paths, ports: Ports, secrets: Secrets, controller: str) -> str:
    """Shared by every Nova service; conductor and scheduler run as `controller` (the lab's
    first node), each nova-compute adds its own node's file."""
    state = paths.var / "nova"
    return f"""\
# Faultline lab: Nova (openstack add-on). Holds passwords: mode 0600.
[DEFAULT]
use_stderr = true
transport_url = {transport_url(ports, secrets)}
host = {controller}
my_ip = {ADDRESS}
state_path = {state}
instances_path = {state / "instances"}
compute_driver = fake.FakeDriverWithoutFakeNodes
report_interval = {REPORT_INTERVAL}
service_down_time = {SERVICE_DOWN_TIME}
graceful_shutdown_timeout = 5
enabled_apis = osapi_compute
osapi_compute_workers = 1
metadata_workers = 1
heal_instance_info_cache_interval = -1
[api]
auth_strategy = keystone
[api_database]
connection = {db_url(ports, secrets, "nova_api")}
[database]
connection = {db_url(ports, secrets, "nova_cell1")}
[wsgi]
api_paste_config = {paths.venv / "etc" / "nova" / "api-paste.ini"}
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
[oslo_concurrency]
lock_path = {state / "lock"}
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0
[vnc]
enabled = false
[glance]
region_name = {REGION}
valid_interfaces = public
{_authtoken(ports, secrets, "nova")}
{_auth_section("placement", ports, secrets, "placement")}
{_auth_section("neutron", ports, secrets, "neutron")}"""


def nova_compute_conf(paths: Paths, node: str, ip: str) -> str:
    """What one nova-compute adds to nova.conf: it is the lab node `node` at `ip`."""
    state = paths.var / "nova-compute" / node
    return f"""\
# Faultline lab: nova-compute of lab node {node} (openstack add-on).
[DEFAULT]
host = {node}
my_ip = {ip}
state_path = {state}
instances_path = {state / "instances"}
[oslo_concurrency]
lock_path = {state / "lock"}
"""


def glance_conf(paths: Paths, ports: Ports, secrets: Secrets) -> str:
    store = paths.var / "glance"
    return f"""\
# Faultline lab: Glance (openstack add-on). Holds passwords: mode 0600.
[DEFAULT]
use_stderr = true
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {store / "images"}
[os_glance_staging_store]
filesystem_store_datadir = {store / "staging"}
[os_glance_tasks_store]
filesystem_store_datadir = {store / "tasks"}
[database]
connection = {db_url(ports, secrets, "glance")}
[paste_deploy]
flavor = keystone
config_file = {paths.venv / "etc" / "glance" / "glance-api-paste.ini"}
[oslo_concurrency]
lock_path = {store / "lock"}
{_authtoken(ports, secrets, "glance")}"""


def neutron_conf(paths: Paths, ports: Ports, secrets: Secrets) -> str:
    state = paths.var / "neutron"
    return f"""\
# Faultline lab: Neutron server, ML2 without agents (openstack add-on). Mode 0600.
[DEFAULT]
use_stderr = true
core_plugin = ml2
# No agents, and only the router and port forwarding plugins: Port.port_forwardings (read
# by every port listing) exists only once the port forwarding model is loaded.
service_plugins = router,port_forwarding
auth_strategy = keystone
transport_url = {transport_url(ports, secrets)}
state_path = {state}
api_paste_config = {paths.venv / "etc" / "neutron" / "api-paste.ini"}
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_workers = 1
rpc_workers = 0
[database]
connection = {db_url(ports, secrets, "neutron")}
[oslo_concurrency]
lock_path = {state / "lock"}
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
{_authtoken(ports, secrets, "neutron")}"""
