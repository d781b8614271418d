"""Faultline: declarative fault injection for OpenStack clouds.

The package is also a drop-in for os-faults' Python API::

    import faultline as os_faults
    cloud = os_faults.connect(config_filename="cloud.yaml")
    os_faults.human_api(cloud, "kill memcached service on one node")
"""

from faultline.api import CloudManagement, connect, discover
from faultline.engine.nodes import Node, NodeCollection
from faultline.human import human_api
from faultline.models.errors import (
    ActionError,
    ConfigError,
    FaultlineError,
    HostKeyError,
    SentenceError,
    UnknownContainerError,
    UnknownNetworkError,
    UnknownNodeError,
    UnknownServiceError,
    UnsafeNameError,
)

__all__ = [
    "ActionError",
    "CloudManagement",
    "ConfigError",
    "FaultlineError",
    "HostKeyError",
    "Node",
    "NodeCollection",
    "SentenceError",
    "UnknownContainerError",
    "UnknownNetworkError",
    "UnknownNodeError",
    "UnknownServiceError",
    "UnsafeNameError",
    "connect",
    "discover",
    "human_api",
]
