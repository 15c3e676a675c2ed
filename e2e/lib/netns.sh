# The ground's own network namespace, for the node (on unless MCPK_NODE=0).
# Sourced by e2e/stack.
# shellcheck shell=bash
#
# A kubelet refuses a loopback node IP, and a Pod cannot reach the host's
# 127.0.0.1, so the whole ground (etcd, apiserver, controllers, Kafka, the
# node) runs in a network namespace this script makes: its own loopback
# still answers on 127.0.0.1 (the ports tests use today), the node IP sits
# on the same `lo`, and the Pods' bridge lives inside it. Nothing in it has
# a route out: no veth to the host, no default route, so whatever runs
# there can only reach the namespace's own addresses and its Pods.
#
# The namespace is a file in the state dir (no name in /run/netns, whose
# first use would leave a shared mount on the host): enter it with
#   nsenter --net="$MCPK_NETNS_FILE" COMMAND
# The node's private mount namespace (node.sh) is kept the same way.

# The node is on by default; MCPK_NODE=0 starts the lighter ground of
# earlier rounds (everything on the host's 127.0.0.1, no Pods). A running
# ground keeps the mode it was started with (recorded by `up`, removed by
# `down`), so that `down` or `exec` without the variable find it.
NODE_MODE_FILE=$STATE_DIR/node-mode
NODE_MODE=${MCPK_NODE:-$(cat "$NODE_MODE_FILE" 2>/dev/null || echo 1)}
NS_DIR=$STATE_DIR/ns
NETNS_FILE=$NS_DIR/net
MNTNS_FILE=$NS_DIR/mnt
NODE_NAME=mcpk-node
NODE_IP=10.200.0.1
POD_BRIDGE=mcpk0
POD_SUBNET=10.244.0.0/24
POD_GATEWAY=10.244.0.1
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
# Pods reach the stack's broker here (advertised as such); tests keep
# 127.0.0.1: PLAINTEXT, and SASL over TLS as on 127.0.0.1's secured port.
KAFKA_POD_PORT=${MCPK_KAFKA_POD_PORT:-19096}
KAFKA_POD_SASL_SSL_PORT=${MCPK_KAFKA_POD_SASL_SSL_PORT:-19097}

node_mode() { [ "$NODE_MODE" = 1 ]; }

# The file is an nsfs bind mount while the namespace exists.
netns_exists() { findmnt -n --mountpoint "$NETNS_FILE" >/dev/null 2>&1; }

ns_inode() { stat -L -c %i "$1" 2>/dev/null; }

# in_ground_netns: this process already runs inside the ground's namespace.
in_ground_netns() {
  netns_exists && [ "$(ns_inode /proc/self/ns/net)" = "$(ns_inode "$NETNS_FILE")" ]
}

in_netns() { nsenter --net="$NETNS_FILE" -- "$@"; }

# unshare(1) binds a namespace to a file only on a private mount (else the
# binding would propagate into the namespace itself): the ns dir is bound
# onto itself and made private, inside the state dir.
ns_dir_ready() {
  mkdir -p "$NS_DIR"
  findmnt -n --mountpoint "$NS_DIR" >/dev/null 2>&1 && return 0
  mount -n --bind "$NS_DIR" "$NS_DIR"
  mount -n --make-private "$NS_DIR"
}

netns_create() {
  netns_exists && return 0
  need_cmd unshare "util-linux"; need_cmd nsenter "util-linux"; need_cmd ip "iproute2"
  [ "$(id -u)" -eq 0 ] || die "the node needs root (namespaces, mounts, cgroups)"
  log "creating the ground's network namespace ($NETNS_FILE; node IP $NODE_IP)"
  ns_dir_ready
  : >"$NETNS_FILE"
  unshare --net="$NETNS_FILE" true
  in_netns ip link set lo up
  in_netns ip addr add "$NODE_IP/32" dev lo
  # The Pods' bridge, made here rather than by the CNI plugin, so that the
  # route to the Service CIDR (which lets the ground itself reach
  # ClusterIPs through kube-proxy's rules) exists before the first Pod.
  in_netns ip link add "$POD_BRIDGE" type bridge
  in_netns ip addr add "$POD_GATEWAY/24" dev "$POD_BRIDGE"
  in_netns ip link set "$POD_BRIDGE" up
  in_netns ip route add "$SERVICE_CIDR" dev "$POD_BRIDGE" src "$NODE_IP"
}

# The host's own network namespace, bound to a file while the ground
# runs (made from outside, by `up`): where `e2e/stack forward` listens,
# and where tests run what a person's client on the host would (nsenter
# --net="$MCPK_HOST_NETNS_FILE"). PID 1's namespace file may not be
# readable here.
HOST_NETNS_FILE=$NS_DIR/host-net
host_netns_bind() {
  findmnt -n --mountpoint "$HOST_NETNS_FILE" >/dev/null 2>&1 && return 0
  ns_dir_ready
  : >"$HOST_NETNS_FILE"
  mount -n --bind /proc/self/ns/net "$HOST_NETNS_FILE"
}

# netns_pids [FILE]: processes whose network namespace is the one bound
# at FILE (default: the ground's).
netns_pids() {
  local want pid
  want="net:[$(ns_inode "${1:-$NETNS_FILE}")]"
  for pid in /proc/[0-9]*; do
    [ "$(readlink "$pid/ns/net" 2>/dev/null)" = "$want" ] && echo "${pid#/proc/}"
  done
  return 0
}

# ns_teardown: after `down` stopped the components, whatever still runs in
# the namespace is killed, then the namespaces and the ns dir are unbound.
ns_teardown() {
  local pids
  if netns_exists; then
    mapfile -t pids < <(netns_pids)
    if [ ${#pids[@]} -gt 0 ]; then
      log "killing what still runs in the ground's namespace: ${pids[*]}"
      kill -KILL "${pids[@]}" 2>/dev/null || true
      sleep 0.5
    fi
    umount -n "$NETNS_FILE"
  fi
  if findmnt -n --mountpoint "$MNTNS_FILE" >/dev/null 2>&1; then umount -n "$MNTNS_FILE"; fi
  if findmnt -n --mountpoint "$HOST_NETNS_FILE" >/dev/null 2>&1; then umount -n "$HOST_NETNS_FILE"; fi
  if findmnt -n --mountpoint "$NS_DIR" >/dev/null 2>&1; then umount -n "$NS_DIR"; fi
  rm -rf "$NS_DIR"
}
