# Real Argo CD on the test ground (on demand: `e2e/stack argocd up|down`):
# its application controller and repo server, built from the Go module
# proxy, with redis, against the ground's apiserver, syncing from a git
# repository of the ground's own. Sourced by e2e/stack.
# shellcheck shell=bash

ARGOCD_BIN_DIR=$CACHE_DIR/argocd-$ARGOCD_VERSION
ARGOCD_BIN=$ARGOCD_BIN_DIR/argocd
# The module's source (manifests/, hack/), as Go's module cache holds it.
argocd_module_dir() { printf '%s' "$(go env GOMODCACHE)/github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"; }

# The binary is cached by version; the module's source may have gone with
# a cleaned module cache: fetch it again (no build).
argocd_module_source() {
  [ -d "$(argocd_module_dir)/manifests/crds" ] && return 0
  log "fetching Argo CD $ARGOCD_VERSION's module source (manifests, hack/) from the Go module proxy"
  GOTOOLCHAIN=$ARGOCD_GO_TOOLCHAIN run_logged "$CACHE_DIR/build/argocd-$ARGOCD_VERSION-source.log" \
    go mod download "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"
}

# `go install github.com/argoproj/argo-cd/v3/cmd@vX` is refused (the module
# has replace lines): a wrapper module requires it and its gitops-engine
# module at the same version and carries the release's replace block,
# less the `=> ./gitops-engine` line. v3.6 needs Go >= 1.27: Go fetches
# that toolchain from the module proxy.
build_argocd() {
  [ -x "$ARGOCD_BIN" ] && return 0
  need_cmd go "Go is needed to build Argo CD"
  log "building Argo CD $ARGOCD_VERSION from the Go module proxy (once; ~11 min on 2 cores)"
  local started=$SECONDS work=$CACHE_DIR/build/argocd-$ARGOCD_VERSION
  mkdir -p "$work" "$ARGOCD_BIN_DIR"
  (
    cd "$work" || exit 1
    export GOTOOLCHAIN=$ARGOCD_GO_TOOLCHAIN CGO_ENABLED=0 GOFLAGS=-mod=mod
    local upstream_mod=$work/argo-cd.mod
    run_logged "$work/download.log" go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"
    cp "$(go env GOMODCACHE)/cache/download/github.com/argoproj/argo-cd/v3/@v/$ARGOCD_VERSION.mod" "$upstream_mod"
    {
      echo "module mcpkafka.dev/testground/argocd"
      echo
      grep -E '^go [0-9]' "$upstream_mod"
      grep -E '^godebug ' "$upstream_mod" || true
      echo
      echo "require ("
      echo "	github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION"
      echo "	github.com/argoproj/argo-cd/gitops-engine/v3 $ARGOCD_VERSION"
      echo ")"
      echo
      sed -n '/^replace (/,/^)/p' "$upstream_mod"
    } >"$work/go.mod"
    run_logged "$work/tidy.log" go mod download
    local pkg=github.com/argoproj/argo-cd/v3/common
    run_logged "$work/build.log" go build -trimpath \
      -ldflags "-s -w -X $pkg.version=${ARGOCD_VERSION#v} -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
      -o "$ARGOCD_BIN.tmp" github.com/argoproj/argo-cd/v3/cmd
    mv "$ARGOCD_BIN.tmp" "$ARGOCD_BIN"
  )
  log "  argocd built in $((SECONDS - started))s"
}

ARGOCD_DIR=$STATE_DIR/argocd
# The application controller binds its metrics port on 0.0.0.0 (no flag
# changes it): Argo CD runs in a network namespace of its own that has
# only a loopback, and reaches the ground's apiserver through a bridge
# (TCP on its loopback -> a unix socket -> TCP on the ground's), the only
# way in or out. Tests reach Argo CD through the apiserver alone
# (Application objects), as a platform team's tooling does.
ARGOCD_NETNS_FILE=$STATE_DIR/ns/argocd-net
ARGOCD_REDIS_PORT=16379
ARGOCD_REPO_SERVER_PORT=18081
ARGOCD_CONTROLLER_METRICS_PORT=18082
ARGOCD_REPO_SERVER_METRICS_PORT=18084
# The ground's GitOps repository (bare), as a platform team's would be.
ARGOCD_GIT_REPO=$ARGOCD_DIR/git/platform.git
ARGOCD_COMPONENTS=(argocd-apiserver-bridge argocd-apiserver-bridge-inside argocd-redis argocd-repo-server argocd-application-controller)

argocd_netns_exists() { findmnt -n --mountpoint "$ARGOCD_NETNS_FILE" >/dev/null 2>&1; }
in_argocd_netns() { nsenter --net="$ARGOCD_NETNS_FILE" -- "$@"; }

argocd_netns_create() {
  argocd_netns_exists && return 0
  [ "$(id -u)" -eq 0 ] || die "Argo CD's network namespace needs root"
  NS_DIR=$(dirname "$ARGOCD_NETNS_FILE") ns_dir_ready
  : >"$ARGOCD_NETNS_FILE"
  unshare --net="$ARGOCD_NETNS_FILE" true
  in_argocd_netns ip link set lo up
}

argocd_netns_remove() {
  argocd_netns_exists || return 0
  local pids
  mapfile -t pids < <(netns_pids "$ARGOCD_NETNS_FILE")
  [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
  umount -n "$ARGOCD_NETNS_FILE"
  rm -f "$ARGOCD_NETNS_FILE"
  # Without a node the ns dir is Argo CD's alone: unbind it too, so that
  # `reset` can remove the state dir.
  local ns_dir
  ns_dir=$(dirname "$ARGOCD_NETNS_FILE")
  if ! node_mode && findmnt -n --mountpoint "$ns_dir" >/dev/null 2>&1; then
    umount -n "$ns_dir"
    rmdir "$ns_dir" 2>/dev/null || true
  fi
}

# The repo server runs git through these scripts of the release's hack/
# (read-only, not executable in Go's module cache); each component is
# picked by its argv[0], a link in the state dir (which is also how
# proc_pid knows them for the stack's own).
argocd_bin_dir() {
  local bin=$ARGOCD_DIR/bin name
  mkdir -p "$bin"
  for name in argocd-repo-server argocd-application-controller; do ln -sfn "$ARGOCD_BIN" "$bin/$name"; done
  for name in git-verify-wrapper.sh gpg-wrapper.sh; do
    install -m 0755 "$(argocd_module_dir)/hack/$name" "$bin/$name"
  done
}

argocd_kubectl() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

argocd_crd_established() {
  argocd_kubectl get crd "$1" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' | grep -q True
}

# Argo CD's CRDs and config objects from the release, as its install
# manifests have them, less the API server's: the secret key it would
# generate, and the default AppProject it would create.
argocd_install_objects() {
  local module
  module=$(argocd_module_dir)
  argocd_kubectl apply --server-side --force-conflicts -k "$module/manifests/crds" >/dev/null
  local crd
  for crd in applications applicationsets appprojects; do
    wait_until kube-apiserver 60 argocd_crd_established "$crd.argoproj.io"
  done
  argocd_kubectl create namespace argocd --dry-run=client -o yaml | argocd_kubectl apply --server-side -f - >/dev/null
  argocd_kubectl apply --server-side --force-conflicts -n argocd -k "$module/manifests/base/config" >/dev/null
  if ! argocd_kubectl -n argocd get secret argocd-secret -o jsonpath='{.data.server\.secretkey}' | grep -q .; then
    argocd_kubectl -n argocd patch secret argocd-secret --type merge \
      -p "{\"stringData\":{\"server.secretkey\":\"$(openssl rand -hex 32)\"}}" >/dev/null
  fi
  argocd_kubectl apply --server-side -f - >/dev/null <<'PROJECT'
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
PROJECT
}

argocd_git_repo() {
  [ -d "$ARGOCD_GIT_REPO" ] && return 0
  mkdir -p "$(dirname "$ARGOCD_GIT_REPO")"
  git init -q --bare -b main "$ARGOCD_GIT_REPO"
}

# The environment both Argo CD processes run with (nsenter execs it).
argocd_env() {
  ARGOCD_ENV=(env HOME="$ARGOCD_DIR/home" TMPDIR="$ARGOCD_DIR/tmp" KUBECONFIG="$ADMIN_KUBECONFIG"
    ARGOCD_FAKE_IN_CLUSTER=true ARGOCD_GPG_ENABLED=false
    PATH="$ARGOCD_DIR/bin:$(dirname "$HELM_BIN"):$K8S_BIN_DIR:/usr/local/bin:/usr/bin:/bin")
}

argocd_repo_server_answers() { in_argocd_netns bash -c "exec 3<>/dev/tcp/127.0.0.1/$ARGOCD_REPO_SERVER_PORT"; }
argocd_controller_answers() { in_argocd_netns curl -fsS "http://127.0.0.1:$ARGOCD_CONTROLLER_METRICS_PORT/metrics" >/dev/null; }
argocd_bridge_answers() { in_argocd_netns curl -ksS -o /dev/null "$APISERVER_URL/readyz"; }
argocd_redis_answers() { in_argocd_netns redis-cli -p "$ARGOCD_REDIS_PORT" ping | grep -q PONG; }

start_argocd() {
  local started=$SECONDS
  need_cmd socat "socat"; need_cmd redis-server "redis-server"; need_cmd git "git"
  build_argocd
  argocd_module_source
  mkdir -p "$ARGOCD_DIR/home" "$ARGOCD_DIR/tmp" "$ARGOCD_DIR/redis"
  argocd_bin_dir
  argocd_git_repo
  argocd_install_objects
  argocd_netns_create
  argocd_env
  if ! proc_pid argocd-apiserver-bridge >/dev/null; then
    rm -f "$ARGOCD_DIR/apiserver.sock"
    start_proc argocd-apiserver-bridge socat "UNIX-LISTEN:$ARGOCD_DIR/apiserver.sock,fork" "TCP:127.0.0.1:$APISERVER_PORT"
  fi
  if ! proc_pid argocd-apiserver-bridge-inside >/dev/null; then
    start_proc argocd-apiserver-bridge-inside nsenter --net="$ARGOCD_NETNS_FILE" -- \
      socat "TCP-LISTEN:$APISERVER_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$ARGOCD_DIR/apiserver.sock"
    wait_until argocd-apiserver-bridge-inside 30 argocd_bridge_answers
  fi
  if ! proc_pid argocd-redis >/dev/null; then
    start_proc argocd-redis nsenter --net="$ARGOCD_NETNS_FILE" -- redis-server --bind 127.0.0.1 \
      --port "$ARGOCD_REDIS_PORT" --save "" --appendonly no --dir "$ARGOCD_DIR/redis" --set-proc-title no
    wait_until argocd-redis 30 argocd_redis_answers
  fi
  if ! proc_pid argocd-repo-server >/dev/null; then
    start_proc argocd-repo-server nsenter --net="$ARGOCD_NETNS_FILE" -- "${ARGOCD_ENV[@]}" \
      "$ARGOCD_DIR/bin/argocd-repo-server" --address 127.0.0.1 --port "$ARGOCD_REPO_SERVER_PORT" \
      --metrics-address 127.0.0.1 --metrics-port "$ARGOCD_REPO_SERVER_METRICS_PORT" \
      --disable-tls --client-ca-path= --redis "127.0.0.1:$ARGOCD_REDIS_PORT" --loglevel warn
    wait_until argocd-repo-server 60 argocd_repo_server_answers
  fi
  if ! proc_pid argocd-application-controller >/dev/null; then
    # --persist-resource-health: an app's health message names its
    # current cause, not the cause of its last change.
    start_proc argocd-application-controller nsenter --net="$ARGOCD_NETNS_FILE" -- "${ARGOCD_ENV[@]}" \
      "$ARGOCD_DIR/bin/argocd-application-controller" --namespace argocd \
      --repo-server "127.0.0.1:$ARGOCD_REPO_SERVER_PORT" --repo-server-plaintext \
      --redis "127.0.0.1:$ARGOCD_REDIS_PORT" --metrics-port "$ARGOCD_CONTROLLER_METRICS_PORT" \
      --persist-resource-health --loglevel warn
    wait_until argocd-application-controller 60 argocd_controller_answers
  fi
  log "Argo CD $ARGOCD_VERSION ready in $((SECONDS - started))s (application controller RSS $(proc_rss_mib argocd-application-controller) MiB, repo server $(proc_rss_mib argocd-repo-server) MiB, redis $(proc_rss_mib argocd-redis) MiB); git repository $ARGOCD_GIT_REPO"
}

stop_argocd() {
  local i
  for ((i = ${#ARGOCD_COMPONENTS[@]} - 1; i >= 0; i--)); do stop_proc "${ARGOCD_COMPONENTS[$i]}"; done
  argocd_netns_remove
}
