# Builds kube-apiserver, kube-controller-manager and kubectl from the Go
# module proxy. Sourced by e2e/stack.
# shellcheck shell=bash

# `go install k8s.io/kubernetes/cmd/...@vX` is refused because the module's
# go.mod has `replace` lines for its staging modules (kubernetes#79384). A
# wrapper module that requires k8s.io/kubernetes and replaces every staging
# module with its published v0.N.P builds the real binaries.
build_k8s() {
  local out=$CACHE_DIR/k8s-$K8S_VERSION
  [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] && [ -x "$out/kubectl" ] && return 0
  need_cmd go "Go is needed to build Kubernetes"
  log "building Kubernetes $K8S_VERSION from the Go module proxy (once; ~10 min on 2 cores)"
  local work=$CACHE_DIR/build/k8s-$K8S_VERSION
  mkdir -p "$work" "$out"
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
  printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' >"$work/tools.go"
  local ldflags="-s -w" major=${K8S_VERSION#v}; major=${major%%.*}
  local minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  # Without these the binaries report v0.0.0-master, which breaks helm's
  # kubeVersion checks and kubectl's version skew warnings.
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (
    cd "$work" || exit 1
    rm -f tools.go
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    run_logged "$work/tidy.log" go mod download
    for cmd in kube-apiserver kube-controller-manager kubectl; do
      log "  go build $cmd"
      run_logged "$work/build-$cmd.log" go build -trimpath -ldflags "$ldflags" -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$out/$cmd.tmp" "$out/$cmd"
    done
  )
}
