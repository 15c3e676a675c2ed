# The ground's node (MCPK_NODE=1): containerd with Debian's runc and CNI
# plugins, kubelet, kube-proxy (iptables), kube-router's firewall
# (NetworkPolicy), kube-scheduler and CoreDNS, running the images
# e2e/lib/images.sh builds. Sourced by e2e/stack; the
# functions that start processes run inside the ground's network namespace
# (netns.sh).
# shellcheck shell=bash
#
# This host is shared, so the node changes nothing outside its state dir:
#   - kubelet, containerd (and so runc, the shims and the CNI plugins) and
#     kube-proxy run in one private mount namespace where /run is the state
#     dir's node/run, /var/lib and /var/log are overlays whose upper layers
#     are in the state dir (the paths the kubelet and CNI hard-code:
#     /var/lib/kubelet/device-plugins, /var/lib/cni, /var/log/containers),
#     and the kernel tunables the kubelet insists on (vm.overcommit_memory,
#     kernel.panic, ...) are files of ours bound over their /proc/sys
#     entries, so the host's values stay as they are;
#   - its cgroups live under /$NODE_CGROUP_ROOT in each hierarchy, removed
#     by `down`;
#   - its iptables rules and net.* sysctls belong to the ground's network
#     namespace and go with it.

NODE_DIR=$STATE_DIR/node
NODE_CGROUP_ROOT=mcpk-$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-8)
CONTAINERD_BIN_DIR=$CACHE_DIR/containerd-$CONTAINERD_VERSION
COREDNS_BIN=$CACHE_DIR/coredns-$COREDNS_VERSION/coredns
KUBE_ROUTER_BIN=$CACHE_DIR/kube-router-$KUBE_ROUTER_VERSION/kube-router
KUBE_ROUTER_HEALTH_PORT=20244
RUNC_BIN=/usr/sbin/runc
CNI_BIN_DIR=/usr/lib/cni
# containerd's socket is the default /run/containerd/containerd.sock inside
# the node's mount namespace (node/run in the state dir from outside).
NODE_COMPONENTS=(containerd kubelet kube-scheduler kube-proxy kube-router coredns)

# What the kubelet sets when it starts (pkg/kubelet/cm: setupKernelTunables).
NODE_SYSCTLS=(vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1
  kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000)

# --- builds (cached by version) -------------------------------------------

build_containerd() {
  [ -x "$CONTAINERD_BIN_DIR/containerd" ] && [ -x "$CONTAINERD_BIN_DIR/containerd-shim-runc-v2" ] \
    && [ -x "$CONTAINERD_BIN_DIR/ctr" ] && return 0
  need_cmd go "Go is needed to build containerd"
  log "building containerd $CONTAINERD_VERSION from the Go module proxy (once)"
  mkdir -p "$CONTAINERD_BIN_DIR"
  local started=$SECONDS
  # no_btrfs: the btrfs snapshotter needs C headers; overlayfs is used.
  GOBIN=$CONTAINERD_BIN_DIR CGO_ENABLED=0 run_logged "$CACHE_DIR/build/containerd-$CONTAINERD_VERSION.log" \
    go install -trimpath -tags no_btrfs -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
  log "  containerd built in $((SECONDS - started))s"
}

build_coredns() {
  [ -x "$COREDNS_BIN" ] && return 0
  need_cmd go "Go is needed to build CoreDNS"
  log "building CoreDNS $COREDNS_VERSION from the Go module proxy (once)"
  mkdir -p "$(dirname "$COREDNS_BIN")"
  local started=$SECONDS
  GOBIN=$(dirname "$COREDNS_BIN") CGO_ENABLED=0 run_logged "$CACHE_DIR/build/coredns-$COREDNS_VERSION.log" \
    go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  log "  coredns built in $((SECONDS - started))s"
}

# `go install .../cmd/kube-router@v` cannot replace the netlink version
# (see versions.sh): a wrapper module that requires kube-router builds it.
build_kube_router() {
  [ -x "$KUBE_ROUTER_BIN" ] && return 0
  need_cmd go "Go is needed to build kube-router"
  log "building kube-router $KUBE_ROUTER_VERSION from the Go module proxy (once)"
  local work=$CACHE_DIR/build/kube-router-$KUBE_ROUTER_VERSION module=github.com/cloudnativelabs/kube-router/v2
  local started=$SECONDS
  mkdir -p "$work" "$(dirname "$KUBE_ROUTER_BIN")"
  run_logged "$work/download.log" go mod download -json "$module@$KUBE_ROUTER_VERSION"
  cat >"$work/go.mod" <<MOD
module mcpkafka.dev/testground/kube-router

$(grep -E '^go [0-9]' "$(go env GOMODCACHE)/cache/download/$module/@v/$KUBE_ROUTER_VERSION.mod")

require $module $KUBE_ROUTER_VERSION

replace github.com/vishvananda/netlink => github.com/vishvananda/netlink $KUBE_ROUTER_NETLINK
MOD
  (
    cd "$work" || exit 1
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    run_logged "$work/build.log" go build -trimpath \
      -ldflags "-s -w -X $module/pkg/version.Version=$KUBE_ROUTER_VERSION" \
      -o "$KUBE_ROUTER_BIN.tmp" "$module/cmd/kube-router"
  )
  mv "$KUBE_ROUTER_BIN.tmp" "$KUBE_ROUTER_BIN"
  log "  kube-router built in $((SECONDS - started))s"
}

install_node() {
  [ -x "$RUNC_BIN" ] || die "runc is not installed (Debian package runc)"
  [ -x "$CNI_BIN_DIR/bridge" ] || die "the CNI plugins are not installed (Debian package containernetworking-plugins)"
  need_cmd iptables "Debian package iptables (kube-proxy's and kube-router's rules)"
  need_cmd ipset "Debian package ipset (kube-router's NetworkPolicy sets)"
  build_k8s_node
  build_containerd
  build_coredns
  build_kube_router
}

# --- certificates -----------------------------------------------------------

ensure_node_pki() {
  # A state dir whose broker certificate predates the node's IP in it.
  if [ ! -f "$PKI_DIR/.kafka-node-ip" ]; then
    issue_kafka_broker_cert
    touch "$PKI_DIR/.kafka-node-ip"
  fi
  # A state dir from before kube-router.
  if [ -f "$PKI_DIR/.node-complete" ] && [ ! -f "$PKI_DIR/kube-router.crt" ]; then
    issue_cert kube-router "/CN=mcpk:kube-router"
    chmod 600 "$PKI_DIR/kube-router.key"
  fi
  [ -f "$PKI_DIR/.node-complete" ] && return 0
  log "generating the node's certificates in $PKI_DIR"
  # Pods reach the apiserver through the `kubernetes` Service, whose
  # endpoint is the node IP: the serving certificate must name it.
  issue_cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1"
  # The Node authorizer knows a kubelet by this group and name.
  issue_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  issue_cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  # exec, logs and port-forward: the apiserver as a client of the kubelet.
  issue_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  # The names the bootstrap RBAC policy grants their permissions to.
  issue_cert kube-proxy "/CN=system:kube-proxy"
  issue_cert kube-scheduler "/CN=system:kube-scheduler"
  issue_cert coredns "/CN=mcpk:coredns"
  issue_cert kube-router "/CN=mcpk:kube-router"
  chmod 600 "$PKI_DIR"/*.key
  touch "$PKI_DIR/.node-complete"
}

# --- the node's mount namespace -----------------------------------------------

# in_node_ns CMD...: CMD in the node's mount namespace (and, being called
# from inside the ground's network namespace, in that too).
in_node_ns() { nsenter --mount="$MNTNS_FILE" -- "$@"; }

mntns_exists() { findmnt -n --mountpoint "$MNTNS_FILE" >/dev/null 2>&1; }

node_mntns_create() {
  mntns_exists && return 0
  ns_dir_ready
  local d
  for d in run overlay/var-lib/upper overlay/var-lib/work overlay/var-log/upper overlay/var-log/work sysctl tmp; do
    mkdir -p "$NODE_DIR/$d"
  done
  : >"$MNTNS_FILE"
  unshare --mount="$MNTNS_FILE" --propagation private true
  local kv key
  for kv in "${NODE_SYSCTLS[@]}"; do
    key=${kv%%=*}
    printf '%s\n' "${kv#*=}" >"$NODE_DIR/sysctl/${key//\//.}"
  done
  # One shell in the namespace makes every mount; -n: no /run/mount/utab
  # (which would be the host's /run until the first mount replaces it).
  # shellcheck disable=SC2016 # expanded by that shell
  in_node_ns sh -eu -c '
    node=$1; shift
    mount -n --bind "$node/run" /run
    mount -n -t overlay overlay -o "lowerdir=/var/lib,upperdir=$node/overlay/var-lib/upper,workdir=$node/overlay/var-lib/work" /var/lib
    mount -n -t overlay overlay -o "lowerdir=/var/log,upperdir=$node/overlay/var-log/upper,workdir=$node/overlay/var-log/work" /var/log
    for kv in "$@"; do
      key=${kv%%=*}
      mount -n --bind "$node/sysctl/$(echo "$key" | tr / .)" "/proc/sys/$key"
    done
  ' sh "$NODE_DIR" "${NODE_SYSCTLS[@]}"
}

# --- cgroups ------------------------------------------------------------------

# The v1 hierarchies (and the hybrid host's unified one) by mount point.
cgroup_mounts() { findmnt -n -l -o TARGET -t cgroup,cgroup2 | grep '^/sys/fs/cgroup/'; }

node_cgroups_create() {
  local m
  for m in $(cgroup_mounts); do
    [ -d "$m/$NODE_CGROUP_ROOT" ] && continue
    mkdir "$m/$NODE_CGROUP_ROOT"
    # A new cpuset has no CPUs or memory nodes: nothing could join it.
    if [ -f "$m/cpuset.cpus" ]; then
      cat "$m/cpuset.cpus" >"$m/$NODE_CGROUP_ROOT/cpuset.cpus"
      cat "$m/cpuset.mems" >"$m/$NODE_CGROUP_ROOT/cpuset.mems"
    fi
  done
}

# node_cgroup_pids: every process in the node's cgroups (the Pods').
node_cgroup_pids() {
  local m
  for m in $(cgroup_mounts); do
    [ -d "$m/$NODE_CGROUP_ROOT" ] && find "$m/$NODE_CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

node_cgroups_remove() {
  local m
  for m in $(cgroup_mounts); do
    [ -d "$m/$NODE_CGROUP_ROOT" ] || continue
    # Deepest first; a cgroup goes once its processes have.
    find "$m/$NODE_CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ ! -d "$m/$NODE_CGROUP_ROOT" ] || log "warning: $m/$NODE_CGROUP_ROOT is still there"
  done
}

# --- configuration files ----------------------------------------------------

write_node_configs() {
  mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam" "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs" \
    "$NODE_DIR/containerd" "$NODE_DIR/opt" "$NODE_DIR/cdi" "$NODE_DIR/volume-plugins" "$NODE_DIR/coredns"
  write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" kubelet
  write_kubeconfig "$NODE_DIR/kube-proxy.kubeconfig" kube-proxy
  write_kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" kube-scheduler
  write_kubeconfig "$NODE_DIR/coredns.kubeconfig" coredns
  write_kubeconfig "$NODE_DIR/kube-router.kubeconfig" kube-router

  write_if_changed "$NODE_DIR/containerd.toml" <<TOML
# Written by e2e/stack (node.sh). Inside the node's mount namespace /run is
# $NODE_DIR/run, so the default socket and state paths land there.
version = 3
root = "$NODE_DIR/containerd"
state = "/run/containerd"
temp = "$NODE_DIR/tmp"
# This host has no CAP_SYS_RESOURCE: nothing may lower an oom_score_adj.
oom_score = 0
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.internal.v1.opt']
  path = "$NODE_DIR/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = ["$NODE_DIR/cdi"]
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$RUNC_BIN"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$NODE_DIR/cni/net.d"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
TOML

  # No masquerading and no route beyond the ground's namespace: Pods reach
  # the node IP, each other and Services, nothing else.
  write_if_changed "$NODE_DIR/cni/net.d/10-mcpk.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "mcpk",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON

  # Pods get CoreDNS only: no search domain or server of the host's.
  : >"$NODE_DIR/resolv.conf"
  write_if_changed "$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
# cgroup v1 hybrid host, no systemd; 1.35+ refuses v1 unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP_ROOT
failSwapOn: false
# No CAP_SYS_RESOURCE here (see containerd's oom_score).
oomScoreAdj: 0
# The tunables are bound over in the node's mount namespace; the host's
# own values are not the kubelet's business.
protectKernelDefaults: false
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: $NODE_DIR/resolv.conf
podLogsDir: $NODE_DIR/pod-logs
volumePluginDir: $NODE_DIR/volume-plugins
maxPods: 40
# The shared disk is fuller than the default thresholds allow (and an
# evicted image could not be pulled again: there is no registry).
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
shutdownGracePeriod: 0s
YAML

  write_if_changed "$NODE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $NODE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
# conntrack limits are host-wide: leave them as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
YAML

  # The cluster zone only: there is no upstream to forward anything else
  # to (and the ground must send nothing off the machine).
  write_if_changed "$NODE_DIR/coredns/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 {
    bind $NODE_IP
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $NODE_DIR/coredns.kubeconfig mcpk
        pods insecure
    }
    cache 5
}
COREFILE
}

# RBAC for CoreDNS and kube-router (the kube-proxy, scheduler and kubelet
# users have theirs from the bootstrap policy and the Node authorizer).
# kube-router reads what its informers watch, and its own Node; it writes
# nothing to the API with only its firewall on.
node_rbac() {
  kubectl_admin apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "mcpk:kube-router"}
rules:
- apiGroups: [""]
  resources: [pods, services, namespaces, nodes]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "mcpk:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "mcpk:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "mcpk:kube-router"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "mcpk:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "mcpk:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "mcpk:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "mcpk:coredns"}
YAML
}

kubectl_admin() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# ctr_node ARGS...: ctr in the node's mount namespace (a client-side `ctr
# run` makes its FIFOs under /run/containerd, which must be the node's).
ctr_node() { in_node_ns "$CONTAINERD_BIN_DIR/ctr" -n k8s.io "$@"; }

# --- start --------------------------------------------------------------------

containerd_ready() { ctr_node version; }
kubelet_healthy() { curl -fsS http://127.0.0.1:10248/healthz; }
node_ready() {
  [ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
kube_proxy_healthy() { curl -fsS http://127.0.0.1:10256/healthz; }
coredns_ready() { curl -fsS http://127.0.0.1:8181/ready; }
kube_router_healthy() { curl -fsS "http://127.0.0.1:$KUBE_ROUTER_HEALTH_PORT/healthz"; }
# The scheduler's Lease is not used (no leader election): a Pending Pod
# bound is what shows it acts; here, that it answers its health check.
scheduler_healthy() { curl -fsSk https://127.0.0.1:10259/healthz; }

start_containerd() {
  if proc_pid containerd >/dev/null; then log "containerd already running"; return 0; fi
  log "starting containerd $CONTAINERD_VERSION (runc $("$RUNC_BIN" --version | head -n1 | cut -d' ' -f3))"
  # The shim's and runc's binaries are found on PATH.
  PATH=$CONTAINERD_BIN_DIR:$PATH TMPDIR=$NODE_DIR/tmp \
    start_proc containerd nsenter --mount="$MNTNS_FILE" -- \
    "$CONTAINERD_BIN_DIR/containerd" --config "$NODE_DIR/containerd.toml"
  wait_until containerd 60 containerd_ready
}

# Imports the archives whose manifest differs from what containerd has.
import_images() {
  local name ref digest have
  for name in "${IMAGE_NAMES[@]}"; do
    case $name in
      pause) ref=$PAUSE_IMAGE ;; sidecar) ref=$SIDECAR_IMAGE ;;
      operator) ref=$OPERATOR_IMAGE ;; probe) ref=$PROBE_IMAGE ;;
    esac
    digest=$(cat "$IMAGE_DIR/$name.digest")
    have=$(ctr_node images ls 2>/dev/null | awk -v ref="$ref" '$1 == ref {print $3}')
    [ "$have" = "$digest" ] && continue
    log "importing $ref"
    run_logged "$LOG_DIR/image-import.log" ctr_node images import --platform linux/amd64 "$IMAGE_DIR/$name.tar"
  done
}

start_kubelet() {
  if proc_pid kubelet >/dev/null; then log "kubelet already running"; return 0; fi
  log "starting kubelet $K8S_VERSION (node $NODE_NAME, $NODE_IP)"
  TMPDIR=$NODE_DIR/tmp start_proc kubelet nsenter --mount="$MNTNS_FILE" -- \
    "$K8S_BIN_DIR/kubelet" --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --v=1
  wait_until kubelet 90 kubelet_healthy
}

start_scheduler() {
  if proc_pid kube-scheduler >/dev/null; then log "kube-scheduler already running"; return 0; fi
  log "starting kube-scheduler $K8S_VERSION"
  start_proc kube-scheduler "$K8S_BIN_DIR/kube-scheduler" \
    --kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
  wait_until kube-scheduler 60 scheduler_healthy
}

start_kube_proxy() {
  if proc_pid kube-proxy >/dev/null; then log "kube-proxy already running"; return 0; fi
  log "starting kube-proxy $K8S_VERSION (iptables, in the ground's namespace)"
  start_proc kube-proxy nsenter --mount="$MNTNS_FILE" -- \
    "$K8S_BIN_DIR/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
  wait_until kube-proxy 60 kube_proxy_healthy
}

# kube-router's firewall: each Pod's traffic through chains built from the
# NetworkPolicies that select it. Pods on one bridge reach each other
# switched, not routed: only br_netfilter (bridge-nf-call-iptables, per
# network namespace) shows those frames to iptables, and a ground whose
# namespace had it off would enforce nothing between its Pods.
start_kube_router() {
  if proc_pid kube-router >/dev/null; then log "kube-router already running"; return 0; fi
  [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ] \
    || die "net.bridge.bridge-nf-call-iptables is not 1 in the ground's namespace: NetworkPolicy would not apply between Pods"
  log "starting kube-router $KUBE_ROUTER_VERSION (its firewall only: NetworkPolicy on the Pod bridge)"
  start_proc kube-router nsenter --mount="$MNTNS_FILE" -- "$KUBE_ROUTER_BIN" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --kubeconfig="$NODE_DIR/kube-router.kubeconfig" --hostname-override="$NODE_NAME" \
    --enable-ipv4=true --enable-ipv6=false --service-cluster-ip-range="$SERVICE_CIDR" \
    --health-addr=127.0.0.1 --health-port="$KUBE_ROUTER_HEALTH_PORT" --metrics-port=0 --v=1
  wait_until kube-router 60 kube_router_healthy
}

start_coredns() {
  if proc_pid coredns >/dev/null; then log "coredns already running"; return 0; fi
  log "starting CoreDNS $COREDNS_VERSION on $NODE_IP:53 (cluster.local)"
  start_proc coredns "$COREDNS_BIN" -conf "$NODE_DIR/coredns/Corefile" -pidfile ""
  wait_until coredns 60 coredns_ready
}

start_node() {
  case "$NODE_DIR" in *[[:space:]]*) die "the node needs a state dir path without spaces ($STATE_DIR)" ;; esac
  ensure_node_pki
  write_node_configs
  node_rbac
  node_mntns_create
  node_cgroups_create
  start_containerd
  import_images
  start_kubelet
  start_scheduler
  start_kube_proxy
  start_kube_router
  start_coredns
  wait_until kubelet 120 node_ready
}

# --- stop ---------------------------------------------------------------------

# Pods first (containerd's shims outlive containerd), through the CRI so no
# grace period is waited for: `down` is for a throwaway ground.
stop_node() {
  stop_proc coredns
  stop_proc kube-router
  stop_proc kube-proxy
  stop_proc kube-scheduler
  stop_proc kubelet
  if proc_pid containerd >/dev/null; then
    local task
    for task in $(ctr_node tasks ls -q 2>/dev/null); do
      ctr_node tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    done
    sleep 1
    for task in $(ctr_node tasks ls -q 2>/dev/null); do
      ctr_node tasks delete -f "$task" >/dev/null 2>&1 || true
    done
  fi
  stop_proc containerd
}

# node_sweep (from outside the ground's namespace, after stop_node): kill
# whatever is left in the node's cgroups, then remove them.
node_sweep() {
  local pids
  mapfile -t pids < <(node_cgroup_pids)
  if [ ${#pids[@]} -gt 0 ]; then
    log "killing what still runs in the node's cgroups: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  fi
  node_cgroups_remove
}
