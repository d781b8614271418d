"""The Faultline lab: real mini-hosts on this machine for tests, demos and benchmarks.

Each node is its own network namespace plus, while powered on, private mount, UTS and PID
namespaces under tini, running real OpenSSH, memcached and redis-server from Debian's init.d
scripts; a management network (eth1) that can be cut without cutting SSH (eth0); a 512M
memory cgroup; and power control (reboot/poweroff from inside, on/off/reset from outside)
through a per-lab supervisor daemon. Needs root on Debian (packages are installed on demand).

    from faultline.lab import Lab
    lab = Lab(state_dir=Path(".lab"), nodes=3)
    lab.up()                      # returns once every node answers SSH
    lab.exec("node1", "service memcached status")
    lab.power("node2", "reset")
    lab.down()
"""

from faultline.lab.lab import Lab, NodeStatus, cleanup_leftovers, destroy
from faultline.lab.state import LabNode, LabState
from faultline.lab.system import LabError

__all__ = [
    "Lab",
    "LabError",
    "LabNode",
    "LabState",
    "NodeStatus",
    "cleanup_leftovers",
    "destroy",
]
