# The stack's components: etcd, kube-apiserver, kube-controller-manager, a
# single-node Kafka broker in KRaft mode, a Prometheus that scrapes the
# broker's JMX exporter, a Schema Registry, and an identity provider
# (Keycloak). Sourced by e2e/stack.
# shellcheck shell=bash

ETCD_PORT=${MCPK_ETCD_PORT:-12379}
ETCD_PEER_PORT=${MCPK_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${MCPK_APISERVER_PORT:-16443}
KAFKA_PORT=${MCPK_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${MCPK_KAFKA_CONTROLLER_PORT:-19093}
# The stack's broker also has secured listeners, for the clients' TLS and
# SASL settings: mutual TLS, and SASL (PLAIN, SCRAM-SHA-256/512) over TLS.
KAFKA_MTLS_PORT=${MCPK_KAFKA_MTLS_PORT:-19094}
KAFKA_SASL_SSL_PORT=${MCPK_KAFKA_SASL_SSL_PORT:-19095}
KAFKA_SASL_USER=mcp-sidecar
# Tenants of the stack's broker, each a SCRAM user whose ACLs reach only
# its own topics (prefix `<tenant>.`) and groups (prefix `<tenant>-`):
# a sidecar that connects as one meets Kafka's authorization (see
# kafka_authorizer and kafka_tenants).
KAFKA_TENANTS=(team-a team-b)
# The stack's broker serves its JMX metrics in Prometheus' format here
# (the JMX exporter's java agent), and a Prometheus scrapes them.
KAFKA_EXPORTER_PORT=${MCPK_KAFKA_EXPORTER_PORT:-19404}
PROMETHEUS_PORT=${MCPK_PROMETHEUS_PORT:-19490}
PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
# Seconds between scrapes: short, so that a test's load shows in rates
# over a 30 s window.
PROMETHEUS_SCRAPE_SECONDS=5
# The Schema Registry (Confluent's API under /apis/ccompat/v7) and its
# management port (health), in memory: a restart forgets every schema.
SCHEMA_REGISTRY_PORT=${MCPK_SCHEMA_REGISTRY_PORT:-19481}
SCHEMA_REGISTRY_MANAGEMENT_PORT=${MCPK_SCHEMA_REGISTRY_MANAGEMENT_PORT:-19482}
SCHEMA_REGISTRY_URL=http://127.0.0.1:$SCHEMA_REGISTRY_PORT/apis/ccompat/v7
# The identity provider (Keycloak), HTTPS only, and its management port
# (health), both on loopback; issuers are https://127.0.0.1:PORT/realms/NAME.
KEYCLOAK_PORT=${MCPK_KEYCLOAK_PORT:-19491}
KEYCLOAK_MANAGEMENT_PORT=${MCPK_KEYCLOAK_MANAGEMENT_PORT:-19492}
KEYCLOAK_URL=https://127.0.0.1:$KEYCLOAK_PORT
KEYCLOAK_STATE_DIR=$STATE_DIR/keycloak
# The stack's broker is the instance named `kafka`; tests that kill and
# restart a broker start extra instances (`e2e/stack kafka ...`) instead of
# disturbing the shared one.
KAFKA_NAME=kafka

APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
ADMIN_KUBECONFIG=$STATE_DIR/kubeconfig
SA_ISSUER=https://kubernetes.default.svc.cluster.local
KAFKA_DIR=$STATE_DIR/$KAFKA_NAME

# use_kafka_instance NAME PORT CONTROLLER_PORT: point the Kafka functions at
# another broker instance, with its own data, config, log and PID file.
use_kafka_instance() {
  [[ $1 =~ ^[a-z0-9-]+$ ]] || die "a Kafka instance name is lowercase letters, digits and '-'"
  KAFKA_NAME=$1 KAFKA_PORT=$2 KAFKA_CONTROLLER_PORT=$3 KAFKA_DIR=$STATE_DIR/$1
  # Where an extra instance listens and is advertised: 127.0.0.1, or (with
  # the node) MCPK_KAFKA_ADDRESS=$NODE_IP for one that Pods reach too (the
  # ground's processes reach the node IP as well).
  KAFKA_ADDRESS=${MCPK_KAFKA_ADDRESS:-127.0.0.1}
  case $KAFKA_ADDRESS in
    127.0.0.1) ;;
    "$NODE_IP") node_mode || die "MCPK_KAFKA_ADDRESS=$NODE_IP is for the ground with the node" ;;
    *) die "MCPK_KAFKA_ADDRESS is 127.0.0.1 or the node IP $NODE_IP (the ground sends traffic nowhere else)" ;;
  esac
}

# --- etcd ------------------------------------------------------------------

etcd_healthy() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

start_etcd() {
  if proc_pid etcd >/dev/null; then log "etcd already running"; return 0; fi
  check_port etcd "$ETCD_PORT" MCPK_ETCD_PORT
  check_port "etcd (peer)" "$ETCD_PEER_PORT" MCPK_ETCD_PEER_PORT
  log "starting etcd $ETCD_VERSION on 127.0.0.1:$ETCD_PORT"
  # --unsafe-no-fsync: a throwaway test store, as envtest runs it.
  start_proc etcd "$ETCD_BIN" --name mcpk --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "mcpk=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync=true --log-level=warn
  wait_until etcd 60 etcd_healthy
}

# --- kube-apiserver ----------------------------------------------------------

apiserver_ready() {
  curl -fsS --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "$APISERVER_URL/readyz" | grep -qx ok
}

# write_kubeconfig FILE USER: a kubeconfig for one client certificate.
write_kubeconfig() {
  cat >"$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: mcpk
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI_DIR/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI_DIR/$2.crt
    client-key: $PKI_DIR/$2.key
contexts:
- name: mcpk
  context: {cluster: mcpk, user: $2}
current-context: mcpk
KCFG
}

start_apiserver() {
  write_kubeconfig "$ADMIN_KUBECONFIG" admin
  write_kubeconfig "$STATE_DIR/controller-manager.kubeconfig" controller-manager
  if proc_pid kube-apiserver >/dev/null; then log "kube-apiserver already running"; return 0; fi
  check_port kube-apiserver "$APISERVER_PORT" MCPK_APISERVER_PORT
  mkdir -p "$STATE_DIR/apiserver"
  # Write requests only, at Metadata level: enough to count the API writes a
  # controller makes (GitOps tools must see no churn), small enough to keep.
  cat >"$STATE_DIR/apiserver/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
POLICY
  if node_mode; then
    cat >"$STATE_DIR/apiserver/admission.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodNodeSelector
  path: $STATE_DIR/apiserver/pod-node-selector.yaml
YAML
    cat >"$STATE_DIR/apiserver/pod-node-selector.yaml" <<YAML
podNodeSelectorPluginConfig:
  clusterDefaultNodeSelector: "$NO_POD_NODE_SELECTOR"
YAML
  fi
  log "starting kube-apiserver $K8S_VERSION on $APISERVER_URL"
  # Service CIDR /16: room for thousands of Services (the operator benchmark
  # makes one per McpKafkaServer, 1,000 of them; a /24 ran out at 254).
  start_proc kube-apiserver "$K8S_BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    "${APISERVER_ADDRESS_FLAGS[@]}" --secure-port="$APISERVER_PORT" \
    --cert-dir="$STATE_DIR/apiserver" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    "${APISERVER_AUTHZ_FLAGS[@]}" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --service-account-issuer="$SA_ISSUER" \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --audit-policy-file="$STATE_DIR/apiserver/audit-policy.yaml" \
    --audit-log-path="$LOG_DIR/apiserver-audit.log" --audit-log-maxsize=200 --audit-log-maxbackup=1 \
    --allow-privileged=true
  wait_until kube-apiserver 120 apiserver_ready
}

# --- kube-controller-manager -------------------------------------------------

# The controllers that make ownership and ServiceAccounts real. Deliberately
# not the deployment/replicaset controllers: with no kubelet, tests write a
# Deployment's status themselves, as those controllers would.
CONTROLLERS=garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,namespace-controller,clusterrole-aggregation-controller

# With a node (MCPK_NODE=1, netns.sh) the apiserver answers Pods too: on
# every address of the ground's own namespace (127.0.0.1 for tests, the
# node IP for Pods, through the `kubernetes` Service), with the Node
# authorizer and NodeRestriction for the kubelet, and as the kubelet's
# client for exec, logs and port-forward; and the controllers that make
# Deployments, Services and the node real run too.
#
# Pods are scheduled only in namespaces that ask for it (PodNodeSelector:
# every other namespace gets a node selector no node matches, so its Pods
# stay Pending): the tests that run a server's sidecar as a local process
# (the process-level tests, see the README) do not also start its Pod. A
# namespace opts in with the annotation
#   scheduler.alpha.kubernetes.io/node-selector: ""
# (an empty selector: any node), as the Pod tests and e2e/run do.
POD_OPT_IN_ANNOTATION=scheduler.alpha.kubernetes.io/node-selector
NO_POD_NODE_SELECTOR=mcpkafka.dev/test-ground=pods-not-asked-for
if node_mode; then
  APISERVER_ADDRESS_FLAGS=(--bind-address=0.0.0.0 "--advertise-address=$NODE_IP")
  APISERVER_AUTHZ_FLAGS=("--authorization-mode=Node,RBAC" --enable-admission-plugins=NodeRestriction,PodNodeSelector
    "--admission-control-config-file=$STATE_DIR/apiserver/admission.yaml"
    "--kubelet-client-certificate=$PKI_DIR/apiserver-kubelet-client.crt"
    "--kubelet-client-key=$PKI_DIR/apiserver-kubelet-client.key"
    "--kubelet-certificate-authority=$PKI_DIR/ca.crt" --kubelet-preferred-address-types=InternalIP)
  CONTROLLERS+=,deployment-controller,replicaset-controller,endpointslice-controller,node-lifecycle-controller,pod-garbage-collector-controller
else
  APISERVER_ADDRESS_FLAGS=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1)
  APISERVER_AUTHZ_FLAGS=(--authorization-mode=RBAC)
fi

# The serviceaccount controller creates `default` in every namespace: its
# appearance shows the controller-manager is up and acting.
controller_manager_acting() {
  "$K8S_BIN_DIR/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" -n default get serviceaccount default
}

start_controller_manager() {
  if proc_pid kube-controller-manager >/dev/null; then log "kube-controller-manager already running"; return 0; fi
  log "starting kube-controller-manager ($CONTROLLERS)"
  start_proc kube-controller-manager "$K8S_BIN_DIR/kube-controller-manager" \
    --kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
    --controllers="$CONTROLLERS" \
    --service-account-private-key-file="$PKI_DIR/sa.key" \
    --root-ca-file="$PKI_DIR/ca.crt" \
    --use-service-account-credentials=true \
    --leader-elect=false --secure-port=0
  wait_until kube-controller-manager 90 controller_manager_acting
}

# --- Kafka -------------------------------------------------------------------

# kafka_java_argv: the java command line (without main class) in KAFKA_JAVA.
kafka_java_argv() {
  need_cmd java "Java 17 runs the Kafka broker"
  KAFKA_JAVA=(java -Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -Dkafka.logs.dir="$LOG_DIR"
    -cp "$(cat "$KAFKA_CLASSPATH_FILE")")
}
kafka_java() { kafka_java_argv; "${KAFKA_JAVA[@]}" "$@"; }

# A metadata answer from the broker: what "ready" means for a client.
kafka_answers_metadata() {
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "${KAFKA_ADDRESS:-127.0.0.1}:$KAFKA_PORT" --list
}

# With a node, Pods reach the stack's broker on the node IP, advertised as
# such (a client follows the advertised address; 127.0.0.1 in a Pod is the
# Pod's own). Prints the piece each listener line needs, or nothing.
kafka_pod_listener() {
  node_mode || return 0
  case $1 in
    listeners | advertised) printf ',POD://%s:%s,POD_SASL_SSL://%s:%s' "$NODE_IP" "$KAFKA_POD_PORT" "$NODE_IP" "$KAFKA_POD_SASL_SSL_PORT" ;;
    map) printf ',POD:PLAINTEXT,POD_SASL_SSL:SASL_SSL' ;;
  esac
}

# The secured listeners of the stack's own broker (extra instances have
# only PLAINTEXT): PEM key store and trust store from the stack's CA.
kafka_secured_listeners() {
  local plain=$KAFKA_DIR/sasl-plain-jaas
  cat <<PROPS
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT$(kafka_pod_listener listeners)
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT$(kafka_pod_listener advertised)
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,MTLS:SSL,SASL_SSL:SASL_SSL$(kafka_pod_listener map)
ssl.keystore.type=PEM
ssl.keystore.location=$PKI_DIR/kafka-broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$PKI_DIR/ca.crt
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
PROPS
  local listener
  for listener in sasl_ssl $(node_mode && echo pod_sasl_ssl); do
    cat <<PROPS
listener.name.$listener.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$(cat "$PKI_DIR/kafka-sasl-password")";
listener.name.$listener.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.$listener.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
  done
}

# The stack's broker authorizes every request with KRaft's own
# authorizer, so that tenants (KAFKA_TENANTS) meet real ACLs. Everything
# else keeps working unchanged because its principal is a super user, to
# which no ACL applies: User:ANONYMOUS is every PLAINTEXT connection (the
# tests' own clients, the controller listener, inter-broker traffic, and
# Pods with a node); the SASL user; and the mutual-TLS client
# certificate's principal, which Kafka's default SSL principal builder
# takes from the certificate's whole subject (pki.sh: /CN=mcp-kafka-sidecar).
# A tenant's denied request is logged in the server log
# (kafka.authorizer.logger), which says which principal asked for what.
kafka_authorizer() {
  cat <<PROPS
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:$KAFKA_SASL_USER;User:CN=mcp-kafka-sidecar
PROPS
}

# The tenants: a SCRAM-SHA-512 credential each (the one mechanism the
# tests use: one ConfigCommand run per mechanism and user, a JVM start
# each) and prefixed ACLs: every operation on the topics `<tenant>.` and
# the groups `<tenant>-` begin. That is all a sidecar needs to stay ready
# (metadata needs no ACL: Kafka leaves out the topics a principal may not
# describe; the cluster ID comes with it; the idempotent producer's
# InitProducerId is allowed to any principal that may write some topic).
# team-a may also describe the cluster, which DescribeAcls needs (so it
# can ask what it may do), and which also shows it every group's name in
# a listing (ListGroups); team-b may not, as a tenant that sees nothing
# outside its prefixes. Set through the plaintext listener once the
# broker answers, once per data dir.
kafka_tenants() {
  local tenant done=$KAFKA_DIR/data/.tenants log=$LOG_DIR/$KAFKA_NAME-tenants.log
  [ -f "$done" ] && return 0
  for tenant in "${KAFKA_TENANTS[@]}"; do
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
      --entity-type users --entity-name "$tenant" \
      --add-config "SCRAM-SHA-512=[iterations=4096,password=$(cat "$PKI_DIR/kafka-$tenant-password")]" >>"$log" 2>&1 \
      || die "setting the SCRAM-SHA-512 credential of $tenant failed; see $log"
    kafka_java org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --add \
      --allow-principal "User:$tenant" --operation All --resource-pattern-type prefixed \
      --topic "$tenant." --group "$tenant-" >>"$log" 2>&1 \
      || die "adding the ACLs of $tenant failed; see $log"
  done
  kafka_java org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --add \
    --allow-principal User:team-a --operation Describe --cluster >>"$log" 2>&1 \
    || die "adding team-a's cluster ACL failed; see $log"
  touch "$done"
}

# SCRAM credentials live in the cluster metadata: set them through the
# plaintext listener once the broker answers, once per data dir. One
# mechanism per request (Kafka refuses two for one user at once). The
# password is on ConfigCommand's command line, so a failure points at the
# log instead of repeating the command.
kafka_scram_users() {
  local mechanism password done=$KAFKA_DIR/data/.scram-users log=$LOG_DIR/$KAFKA_NAME-scram.log
  [ -f "$done" ] && return 0
  password=$(cat "$PKI_DIR/kafka-sasl-password")
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
      --entity-type users --entity-name "$KAFKA_SASL_USER" \
      --add-config "$mechanism=[iterations=4096,password=$password]" >>"$log" 2>&1 \
      || die "setting the $mechanism credential of $KAFKA_SASL_USER failed; see $log"
  done
  touch "$done"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  local listeners
  if [ "$KAFKA_NAME" = kafka ]; then
    # Extra instances have no authorizer: tests see a broker without one there.
    listeners="$(kafka_secured_listeners)
$(kafka_authorizer)"
  else
    listeners="listeners=PLAINTEXT://$KAFKA_ADDRESS:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_ADDRESS:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  fi
  cat >"$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
$listeners
log.dirs=$KAFKA_DIR/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  cat >"$KAFKA_DIR/log4j2.properties" <<LOG4J
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $LOG_DIR/$KAFKA_NAME-server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
LOG4J
}

start_kafka() {
  if proc_pid "$KAFKA_NAME" >/dev/null; then log "$KAFKA_NAME already running"; return 0; fi
  check_port "$KAFKA_NAME" "$KAFKA_PORT" MCPK_KAFKA_PORT
  check_port "$KAFKA_NAME (controller)" "$KAFKA_CONTROLLER_PORT" MCPK_KAFKA_CONTROLLER_PORT
  if [ "$KAFKA_NAME" = kafka ]; then
    check_port "$KAFKA_NAME (mTLS)" "$KAFKA_MTLS_PORT" MCPK_KAFKA_MTLS_PORT
    check_port "$KAFKA_NAME (SASL_SSL)" "$KAFKA_SASL_SSL_PORT" MCPK_KAFKA_SASL_SSL_PORT
  fi
  write_kafka_config
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    # A KRaft cluster ID is a base64url UUID without padding (22 chars). One
    # in 64 starts with '-', which the tool's parser reads as a flag unless
    # it is given as --cluster-id=ID (a CI run failed so).
    python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))' \
      >"$KAFKA_DIR/cluster-id"
    log "formatting Kafka storage (cluster id $(cat "$KAFKA_DIR/cluster-id"))"
    run_logged "$LOG_DIR/$KAFKA_NAME-format.log" kafka_java kafka.tools.StorageTool format \
      --cluster-id="$(cat "$KAFKA_DIR/cluster-id")" -c "$KAFKA_DIR/server.properties"
  fi
  log "starting Apache Kafka $KAFKA_VERSION (KRaft) on ${KAFKA_ADDRESS:-127.0.0.1}:$KAFKA_PORT ($KAFKA_NAME)"
  kafka_java_argv
  # Only the stack's own broker, and only the broker process (not the
  # admin tools kafka_java runs), loads the exporter: one port, one owner.
  local agent=()
  if [ "$KAFKA_NAME" = kafka ]; then
    check_port "$KAFKA_NAME (JMX exporter)" "$KAFKA_EXPORTER_PORT" MCPK_KAFKA_EXPORTER_PORT
    agent=("-javaagent:$JMX_EXPORTER_JAR=127.0.0.1:$KAFKA_EXPORTER_PORT:$E2E_DIR/kafka/jmx-exporter.yaml")
  fi
  local started=$SECONDS
  start_proc "$KAFKA_NAME" "${KAFKA_JAVA[0]}" "${agent[@]}" "${KAFKA_JAVA[@]:1}" kafka.Kafka "$KAFKA_DIR/server.properties"
  wait_until "$KAFKA_NAME" 120 kafka_answers_metadata
  log "$KAFKA_NAME ready in $((SECONDS - started))s, RSS $(proc_rss_mib "$KAFKA_NAME") MiB${agent[*]:+ (with the JMX exporter on 127.0.0.1:$KAFKA_EXPORTER_PORT)}"
}

# --- Prometheus ----------------------------------------------------------------

# Ready means scraped: the broker's exporter answered Prometheus at least
# once, so a query finds its series.
prometheus_scraped() {
  curl -fsS --get "$PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=up{job="kafka"} == 1' \
    | grep -q '"result":\[{'
}

write_prometheus_config() {
  mkdir -p "$STATE_DIR/prometheus/data"
  cat >"$STATE_DIR/prometheus/prometheus.yml" <<PROM
global:
  scrape_interval: ${PROMETHEUS_SCRAPE_SECONDS}s
  scrape_timeout: ${PROMETHEUS_SCRAPE_SECONDS}s
  evaluation_interval: ${PROMETHEUS_SCRAPE_SECONDS}s
scrape_configs:
  - job_name: kafka
    static_configs:
      - targets: ["127.0.0.1:$KAFKA_EXPORTER_PORT"]
PROM
}

start_prometheus() {
  if proc_pid prometheus >/dev/null; then log "prometheus already running"; return 0; fi
  check_port prometheus "$PROMETHEUS_PORT" MCPK_PROMETHEUS_PORT
  write_prometheus_config
  log "starting Prometheus $PROMETHEUS_VERSION on $PROMETHEUS_URL (scraping the broker every ${PROMETHEUS_SCRAPE_SECONDS}s)"
  local started=$SECONDS
  # A day of samples is more than any test looks back over.
  start_proc prometheus "$PROMETHEUS_BIN" --config.file="$STATE_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STATE_DIR/prometheus/data" --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --log.level=warn
  wait_until prometheus 90 prometheus_scraped
  log "prometheus scraped the broker $((SECONDS - started))s after its start, RSS $(proc_rss_mib prometheus) MiB"
}

# --- Schema Registry -----------------------------------------------------------

schema_registry_answers() {
  curl -fsS "$SCHEMA_REGISTRY_URL/subjects" | grep -q '^\['
}

start_schema_registry() {
  if proc_pid schema-registry >/dev/null; then log "schema registry already running"; return 0; fi
  check_port schema-registry "$SCHEMA_REGISTRY_PORT" MCPK_SCHEMA_REGISTRY_PORT
  check_port schema-registry "$SCHEMA_REGISTRY_MANAGEMENT_PORT" MCPK_SCHEMA_REGISTRY_MANAGEMENT_PORT
  log "starting Apicurio Registry $APICURIO_VERSION on $SCHEMA_REGISTRY_URL (in memory)"
  local started=$SECONDS
  # A small heap and the serial collector: ~4 s to ready and under 300 MiB
  # on 2 cores. No access log: tests make thousands of requests.
  # Its temp files go to the state dir (which is also how proc_pid knows
  # the process for the stack's own).
  mkdir -p "$STATE_DIR/schema-registry/tmp"
  start_proc schema-registry "$REGISTRY_JAVA" -Xmx256m -XX:+UseSerialGC \
    -Djava.io.tmpdir="$STATE_DIR/schema-registry/tmp" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$SCHEMA_REGISTRY_PORT" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$SCHEMA_REGISTRY_MANAGEMENT_PORT" \
    -Dquarkus.otel.enabled=false -Dquarkus.http.access-log.enabled=false \
    -jar "$APICURIO_DIR/quarkus-run.jar"
  wait_until schema-registry 90 schema_registry_answers
  log "schema registry ready in $((SECONDS - started))s, RSS $(proc_rss_mib schema-registry) MiB"
}

# --- Keycloak --------------------------------------------------------------------

keycloak_ready() {
  curl -fsS --cacert "$PKI_DIR/ca.crt" "https://127.0.0.1:$KEYCLOAK_MANAGEMENT_PORT/health/ready" | grep -q '"UP"'
}

# The admin's password, made once per state dir (0600); Keycloak creates
# the admin from it at its first start (KC_BOOTSTRAP_ADMIN_*), later starts
# ignore it.
ensure_keycloak_admin() {
  local file=$KEYCLOAK_STATE_DIR/admin-password
  [ -s "$file" ] && return 0
  mkdir -p "$KEYCLOAK_STATE_DIR"; chmod 700 "$KEYCLOAK_STATE_DIR"
  (umask 077; openssl rand -hex 16 >"$file")
}

# Keycloak's java process: kc.sh (whose PID the PID file holds) runs it as
# a child and waits. SIGSTOP/SIGCONT must reach the java process itself
# (a stopped kc.sh would keep serving), so its PID has a file of its own.
keycloak_java_pid() {
  local pid
  pid=$(proc_pid keycloak) || return 1
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = java ]; then echo "$pid"; return 0; fi
  pgrep -P "$pid" -x java | head -n1
}

# Realms `mcp` and `other` (users, groups, clients, registration policy),
# through the admin REST API; idempotent, so every start runs it.
keycloak_realms() {
  need_cmd python3
  run_logged "$LOG_DIR/keycloak-realms.log" python3 "$E2E_DIR/lib/keycloak_realm.py" setup \
    --url "$KEYCLOAK_URL" --ca-file "$PKI_DIR/ca.crt" --state-dir "$KEYCLOAK_STATE_DIR"
}

start_keycloak() {
  if proc_pid keycloak >/dev/null; then log "keycloak already running"; return 0; fi
  check_port keycloak "$KEYCLOAK_PORT" MCPK_KEYCLOAK_PORT
  check_port "keycloak (management)" "$KEYCLOAK_MANAGEMENT_PORT" MCPK_KEYCLOAK_MANAGEMENT_PORT
  need_cmd java "Java 17 runs Keycloak"
  ensure_keycloak_pki
  ensure_keycloak_admin
  mkdir -p "$KEYCLOAK_STATE_DIR/tmp"
  log "starting Keycloak $KEYCLOAK_VERSION on $KEYCLOAK_URL"
  local started=$SECONDS
  # --cache=local at start (not build): otherwise it clusters, on
  # non-loopback ports. http-host is where HTTPS listens too. The dev-file
  # database (H2) and the temp files go to the state dir
  # (-Dkc.db-url-path), not the shared cache. One more port, ephemeral and
  # on loopback too, is the transaction manager's (Narayana's recovery
  # listener; neither its nor Quarkus' switch closed it). The admin's
  # password reaches it in the environment, not on a command line.
  (
    export KC_BOOTSTRAP_ADMIN_USERNAME=admin
    KC_BOOTSTRAP_ADMIN_PASSWORD=$(cat "$KEYCLOAK_STATE_DIR/admin-password")
    export KC_BOOTSTRAP_ADMIN_PASSWORD
    start_proc keycloak "$KEYCLOAK_DIR/bin/kc.sh" \
      "-Dkc.db-url-path=$KEYCLOAK_STATE_DIR" "-Djava.io.tmpdir=$KEYCLOAK_STATE_DIR/tmp" \
      start --optimized --cache=local \
      --http-enabled=false --http-host=127.0.0.1 --https-port="$KEYCLOAK_PORT" \
      --https-certificate-file="$PKI_DIR/keycloak.crt" --https-certificate-key-file="$PKI_DIR/keycloak.key" \
      --hostname="$KEYCLOAK_URL" \
      --http-management-host=127.0.0.1 --http-management-port="$KEYCLOAK_MANAGEMENT_PORT" \
      --log-level=INFO,io.smallrye.health:WARN
  )
  wait_until keycloak 120 keycloak_ready
  keycloak_java_pid >"$KEYCLOAK_STATE_DIR/java.pid" || die "keycloak is ready but its java process was not found"
  local ready=$((SECONDS - started))
  keycloak_realms
  log "keycloak ready in ${ready}s, its realms set up in $((SECONDS - started - ready))s, RSS $(awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$(cat "$KEYCLOAK_STATE_DIR/java.pid")/status") MiB"
}

# SIGCONT first: a test may have left it stopped (SIGSTOP, the "identity
# provider unreachable" case), and a stopped java never acts on SIGTERM.
# kc.sh passes SIGTERM on; if the java process outlives kc.sh, it is
# killed too, so that nothing of Keycloak is left.
stop_keycloak() {
  local java
  java=$(cat "$KEYCLOAK_STATE_DIR/java.pid" 2>/dev/null || true)
  if [ -n "$java" ] && [[ "$(tr '\0' ' ' <"/proc/$java/cmdline" 2>/dev/null)" == *"$STATE_DIR"* ]]; then
    kill -CONT "$java" 2>/dev/null || true
  else
    java=""
  fi
  stop_proc keycloak
  if [ -n "$java" ]; then
    local i
    for ((i = 0; i < 60; i++)); do kill -0 "$java" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$java" 2>/dev/null || true
  fi
  rm -f "$KEYCLOAK_STATE_DIR/java.pid"
}

# The variables write_env adds for Keycloak (also printed alone by
# `e2e/stack keycloak env`). Secrets stay in their 0600 files; these name
# them. The realm script names its own parts (MCPK_OIDC_*).
keycloak_env() {
  cat <<ENV
# The identity provider (Keycloak $KEYCLOAK_VERSION; e2e/lib/keycloak_realm.py
# sets it up): realm mcp (the sidecars' issuer) and realm other (the same
# users, another issuer); users alice (group kafka-operators) and bob
# (kafka-viewers), their passwords in MCPK_OIDC_USERS_FILE; a confidential
# client for quick tokens (password grant) and one whose tokens live
# MCPK_OIDC_SHORT_TOKEN_SECONDS. A token's aud is the resource it asks for,
# once that URL is registered (keycloak_realm.py resource add URL).
export MCPK_KEYCLOAK_URL=$KEYCLOAK_URL
export MCPK_KEYCLOAK_VERSION=$KEYCLOAK_VERSION
export MCPK_KEYCLOAK_ADMIN_USERNAME=admin
export MCPK_KEYCLOAK_ADMIN_PASSWORD_FILE=$KEYCLOAK_STATE_DIR/admin-password
export MCPK_KEYCLOAK_STATE_DIR=$KEYCLOAK_STATE_DIR
export MCPK_KEYCLOAK_PID_FILE=$KEYCLOAK_STATE_DIR/java.pid
ENV
  python3 "$E2E_DIR/lib/keycloak_realm.py" env --url "$KEYCLOAK_URL" --ca-file "$PKI_DIR/ca.crt" --state-dir "$KEYCLOAK_STATE_DIR"
}
