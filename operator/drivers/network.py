"""Link state and iptables rules on a node, and the dead-man's switch that undoes them."""

from __future__ import annotations

from dataclasses import dataclass

from faultline.drivers.shell import detached, q


def link_state(interface: str) -> str:
    """Prints UP or DOWN (administrative state)."""
    return (
        f"ip -o link show dev {q(interface)} | grep -q '<[^>]*[<,]UP[,>]' && echo UP || echo DOWN"
    )


def link_set(interface: str, state: str) -> str:
    assert state in ("up", "down")
    return f"ip link set dev {q(interface)} {state}"


@dataclass(frozen=True)
class DropRule:
    """An iptables DROP rule tagged with a comment that identifies its injection."""

    chain: str
    protocol: str
    port_option: str
    port: int
    comment: str

    def spec(self) -> str:
        return (
            f"{self.chain} -p {q(self.protocol)} --{self.port_option} {int(self.port)} "
            f"-m comment --comment {q(self.comment)} -j DROP"
        )

    def insert(self) -> str:
        spec = self.spec()
        return f"iptables -w -C {spec} 2>/dev/null || iptables -w -I {spec}"

    def delete(self) -> str:
        spec = self.spec()
        return f"while iptables -w -C {spec} 2>/dev/null; do iptables -w -D {spec}; done"

    def present(self) -> str:
        """Exit 0 when the rule is present."""
        return f"iptables -w -C {self.spec()} 2>/dev/null"


def drop_rules(protocol: str, port: int, direction: str, comment: str) -> list[DropRule]:
    """Ingress drops packets to the service port; egress drops packets it sends."""
    rules = []
    if direction in ("ingress", "both"):
        rules.append(DropRule("INPUT", protocol, "dport", port, comment))
    if direction in ("egress", "both"):
        rules.append(DropRule("OUTPUT", protocol, "sport", port, comment))
    return rules


def deadman(restore: str, seconds: int, marker: str) -> str:
    """Arm an on-node timer that runs `restore` even if nobody ever comes back; prints its pid."""
    return detached(f"sleep {int(seconds)}; {restore}", marker)
