# The Debian packages that building the crates and running the test ground
# need, in one list, installed by the one function below. e2e/stack up (and
# so e2e/run and e2e/test) and .ci/run call it, so that either README
# command works as the first one on a fresh machine.
# shellcheck shell=bash

# cmake: rdkafka-sys builds librdkafka with it; libcurl4-openssl-dev: its
# cmake build includes curl.h even without the OIDC feature (librdkafka
# 2.12); libssl-dev, pkg-config: TLS for librdkafka; curl, openssl,
# iproute2 (ss): the stack's readiness checks, certificates and port
# checks; maven: resolves the Kafka jars; python3-venv: the MCP Python
# SDK's virtualenv; git, redis-server, socat: Argo CD's repo server, its
# cache, and the bridge into its network namespace (e2e/lib/argocd.sh; the
# stack starts its own redis on another port, never the package's
# service); unzip: Keycloak's distribution is a zip. npm (installs the TypeScript SDK's tests) is needed as a
# command: a Node from elsewhere brings its own npm.
SYSTEM_PACKAGES=(cmake libcurl4-openssl-dev libssl-dev pkg-config curl openssl iproute2 maven python3-venv
  git redis-server socat unzip)
# With the node (unless MCPK_NODE=0; e2e/lib/node.sh): the OCI runtime, the
# CNI plugins, kube-proxy's iptables and conntrack, kube-router's ipset, and
# gcc for the static pause.
[ "${MCPK_NODE:-1}" = 1 ] && SYSTEM_PACKAGES+=(runc containernetworking-plugins iptables conntrack ipset gcc libc6-dev)

missing_system_packages() {
  local p
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$p"
  done
  command -v npm >/dev/null 2>&1 || printf '%s\n' npm
}

# Installs what is missing when run as root on Debian; otherwise names the
# packages and the command, and stops before a build fails halfway with a
# missing header.
ensure_system_packages() {
  command -v dpkg-query >/dev/null 2>&1 || {
    printf '[stack] not a Debian-based system: make sure these are installed: %s\n' "${SYSTEM_PACKAGES[*]}" >&2
    return 0
  }
  local missing
  mapfile -t missing < <(missing_system_packages)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    printf '[stack] error: missing Debian packages: %s\n  install them with: sudo apt-get install %s\n' \
      "${missing[*]}" "${missing[*]}" >&2
    return 1
  fi
  printf '[stack] installing Debian packages: %s\n' "${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
