"""Faultline: declarative fault injection for OpenStack clouds.

The package is also a drop-in for os-faults' Python API::

    import faultline as os_faults
    cloud = os_faults.connect(config_filename="cloud.yaml")
    os_faults.human_api(cloud, "kill memcached service on one node")
"""

if __name__ == "operator":  # pragma: no cover - depends on how Python was started
    # The repository keeps this package in a folder named `operator/` (the layout is the
    # user's). When the repository root is on sys.path (`python -m ...` run from it), that
    # folder shadows the standard library's `operator`; load the real one in its place.
    # Only modules already loaded at start-up may be used here (`os`, builtins).
    import os

    _path = os.path.join(os.path.dirname(os.__file__), "operator.py")
    with open(_path) as _source:
        exec(compile(_source.read(), _path, "exec"), globals())  # noqa: S102
else:
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
