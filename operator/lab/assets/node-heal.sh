#!/bin/bash
# Brings a lab node to the health it has right after boot: links up with their addresses,
# an empty firewall, and ssh, memcached and redis-server running. Runs inside the node
# (at boot and from `Lab.reset_state`); cheap when nothing needs fixing. Prints each fix.
#
# usage: node-heal.sh ETH0_CIDR ETH1_CIDR
set -u
eth0_cidr=$1 eth1_cidr=$2
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The node's own /etc files (account databases, hosts, ...): the host replacing its own file
# detaches the node's mount over it.
if [ -f /run/faultline-lab/etc-mounts ]; then
    while read -r source target _; do
        [ "$source" -ef "$target" ] && continue
        mount --bind "$source" "$target" && echo "fixed: $target mounted again"
    done </run/faultline-lab/etc-mounts
fi

for dev in eth0 eth1; do
    read -r state <"/sys/class/net/$dev/operstate"
    [ "$state" = up ] || echo "fixed: $dev up"
done
ip -batch - <<EOF
link set lo up
addr replace $eth0_cidr dev eth0
link set eth0 up
addr replace $eth1_cidr dev eth1
link set eth1 up
EOF

# The kernel activates a link that just came up with a delay of up to a second (linkwatch);
# until then it drops packets. Wait for it, so "healed" means traffic flows.
for _ in $(seq 150); do
    read -r eth0_state </sys/class/net/eth0/operstate
    read -r eth1_state </sys/class/net/eth1/operstate
    [ "$eth0_state" = up ] && [ "$eth1_state" = up ] && break
    sleep 0.01
done

# Empty every table that has rules, custom chains or a non-ACCEPT policy (a reboot would).
for family in iptables ip6tables; do
    rules=$("$family-save" 2>/dev/null) || continue
    if grep -qE '^-A |^:[^ ]+ - |^:[^ ]+ (DROP|REJECT)' <<<"$rules"; then
        sed -e '/^-A /d' -e '/^:[^ ]* - /d' -e 's/^\(:[^ ]*\) [A-Z]* .*/\1 ACCEPT [0:0]/' \
            <<<"$rules" | "$family-restore"
        echo "fixed: $family rules flushed"
    fi
done

ensure_running() {
    if ! service "$1" status >/dev/null 2>&1; then
        service "$1" start >/dev/null 2>&1 || echo "failed: service $1 start" >&2
        echo "fixed: $1 started"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ensure_running memcached &
ensure_running redis-server &
# Containers (podman/docker `web`), when the lab runs any: starts what is not running.
if [ -f /run/faultline-lab/containers.sh ]; then
    sh /run/faultline-lab/containers.sh &
fi
wait

# Daemons bind after their start scripts return; answer SSH only once they listen.
for _ in $(seq 250); do
    port_open 11211 && port_open 6379 && break
    sleep 0.02
done

ensure_running ssh
