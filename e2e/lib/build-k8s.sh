# Builds the Kubernetes binaries from the Go module proxy: kube-apiserver,
# kube-controller-manager and kubectl for the control plane, and kubelet,
# kube-proxy and kube-scheduler for the node. Sourced by e2e/stack.
# shellcheck shell=bash

# `go install k8s.io/kubernetes/cmd/...@vX` is refused because the module's
# go.mod has `replace` lines for its staging modules (kubernetes#79384). A
# wrapper module that requires k8s.io/kubernetes and replaces every staging
# module with its published v0.N.P builds the real binaries.
K8S_CONTROL_PLANE_CMDS=(kube-apiserver kube-controller-manager kubectl)
K8S_NODE_CMDS=(kubelet kube-proxy kube-scheduler)

build_k8s() { build_k8s_cmds "${K8S_CONTROL_PLANE_CMDS[@]}"; }
build_k8s_node() { build_k8s_cmds "${K8S_NODE_CMDS[@]}"; }

# build_k8s_cmds CMD...: the named k8s.io/kubernetes/cmd/CMD binaries into
# $CACHE_DIR/k8s-$K8S_VERSION, skipping those already there.
build_k8s_cmds() {
  local out=$CACHE_DIR/k8s-$K8S_VERSION cmd missing=()
  for cmd in "$@"; do [ -x "$out/$cmd" ] || missing+=("$cmd"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_cmd go "Go is needed to build Kubernetes"
  log "building ${missing[*]} $K8S_VERSION from the Go module proxy (once; the control plane ~10 min on 2 cores)"
  local work=$CACHE_DIR/build/k8s-$K8S_VERSION
  mkdir -p "$work" "$out"
  k8s_wrapper_module "$work"
  local ldflags
  ldflags=$(k8s_ldflags)
  (
    cd "$work" || exit 1
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    run_logged "$work/tidy.log" go mod download
    for cmd in "${missing[@]}"; do
      log "  go build $cmd"
      local started=$SECONDS
      run_logged "$work/build-$cmd.log" go build -trimpath -ldflags "$ldflags" -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$out/$cmd.tmp" "$out/$cmd"
      log "  $cmd built in $((SECONDS - started))s"
    done
  )
}

# k8s_wrapper_module DIR: writes DIR/go.mod (once per version).
k8s_wrapper_module() {
  local work=$1
  [ -f "$work/go.mod" ] && grep -q "require k8s.io/kubernetes $K8S_VERSION\$" "$work/go.mod" && return 0
  local staging=v0.${K8S_VERSION#v1.}
  local upstream_mod=$work/kubernetes.mod
  run_logged "$work/download.log" go mod download -json "k8s.io/kubernetes@$K8S_VERSION"
  cp "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod" "$upstream_mod"
  {
    echo "module mcpkafka.dev/testground/k8s"
    echo
    grep -E '^go [0-9]' "$upstream_mod"
    # godebug settings apply only in the main module: carry the release's own.
    grep -E '^godebug ' "$upstream_mod" || true
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # The staging list comes from the release's own go.mod.
    sed -nE 's#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+#\t\1 => \1 '"$staging"'#p' "$upstream_mod"
    echo ")"
  } >"$work/go.mod"
}

# Without these the binaries report v0.0.0-master, which breaks helm's
# kubeVersion checks, kubectl's version skew warnings and the kubelet's
# version in its Node object.
k8s_ldflags() {
  local ldflags="-s -w" major=${K8S_VERSION#v} pkg
  major=${major%%.*}
  local minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$ldflags"
}
