#!/bin/bash
# Boots one Faultline lab node. Runs as the only child of tini (PID 1) in the node's own
# mount, UTS and PID namespaces, inside its network namespace. Every mount made here lives
# in the node's private mount namespace and disappears when the node powers off.
#
# usage: node-init.sh NODE_DIR FQDN ETH0_CIDR ETH1_CIDR LAB_BIN_DIR
set -eu
node_dir=$1 fqdn=$2 eth0_cidr=$3 eth1_cidr=$4 lab_bin=$5

hostname "$fqdn"

# Own /sys so /sys/class/net shows this node's links, not the host's.
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mkdir -p -m 1777 /run/lock
mkdir -p /run/faultline-lab/bin /run/faultline-lab/etc

# The lab's scripts stay reachable after /tmp is replaced below (state dirs often live there).
mount --bind -o ro "$lab_bin" /run/faultline-lab/bin

mount --bind "$node_dir/ssh" /etc/ssh
mount --bind "$node_dir/root" /root
mount --bind "$node_dir/home" /home
mount --bind "$node_dir/log" /var/log
mount --bind "$node_dir/redis" /var/lib/redis
mount --bind "$node_dir/vartmp" /var/tmp

# Per-node files over the host's, from $node_dir/etc (a / in the name becomes a -), which
# stays reachable as /run/faultline-lab/etc after /tmp is replaced. The host replacing one of
# its own files (useradd renames a new /etc/passwd into place) detaches the node's mount
# over it: node-heal.sh mounts again what /run/faultline-lab/etc-mounts lists.
# One `mount --all` of a list in fstab form costs one process instead of one per file.
mount --bind "$node_dir/etc" /run/faultline-lab/etc
files="hosts hostname memcached.conf redis/redis.conf passwd group shadow"
[ -d /etc/sudoers.d ] && files="$files sudoers.d"
for file in $files; do
    echo "/run/faultline-lab/etc/${file//\//-} /etc/$file none bind 0 0"
done >/run/faultline-lab/etc-mounts
mount --all --fstab /run/faultline-lab/etc-mounts

# Debian's reboot/poweroff/halt/shutdown are symlinks to systemctl, which cannot work
# without systemd. Mounts follow symlinks, so the power helper lands on their target(s).
declare -A targets=()
for tool in reboot poweroff halt shutdown; do
    if target=$(readlink -e "/usr/sbin/$tool"); then
        targets[$target]=1
    fi
done
for target in "${!targets[@]}"; do
    mount --bind -o ro "$lab_bin/node_power.py" "$target"
done

# Container engines' per-node storage and config (written by the lab; may be empty).
if [ -f "$node_dir/mounts" ]; then
    while IFS=$'\t' read -r source target; do
        mount --bind "$source" "$target"
    done <"$node_dir/mounts"
fi
if [ -f "$node_dir/containers.sh" ]; then
    cp "$node_dir/containers.sh" /run/faultline-lab/containers.sh
fi

mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp

# /proc/uptime and boot_id are the host's: record this node's own boot.
readlink /proc/self/ns/pid > /run/faultline-lab/pid-ns
cat /proc/sys/kernel/random/uuid > /run/faultline-lab/boot-id
# Tools (and Faultline's reboot check) read the kernel's boot id: show them the node's own.
mount --bind -o ro /run/faultline-lab/boot-id /proc/sys/kernel/random/boot_id
date +%s.%N > /run/faultline-lab/boot-time
echo "$fqdn" > /run/faultline-lab/node

/run/faultline-lab/bin/node-heal.sh "$eth0_cidr" "$eth1_cidr" > /run/faultline-lab/boot.log 2>&1 \
    || echo "node-heal.sh failed, see /run/faultline-lab/boot.log" >&2
touch /run/faultline-lab/ready

exec sleep infinity
