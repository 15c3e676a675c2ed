//! The API: `McpKafkaServer` and `McpToolPolicy` (group `mcpkafka.dev`,
//! version `v1alpha1`). The CRD YAML in `crds/` is generated from these
//! types (`mcp-kafka-operator crds`); their doc comments are what
//! `kubectl explain` shows, and their schema and CEL rules are what the
//! apiserver checks at admission.

// Each printcolumn(...) repeats `type_ = ...`; clippy reads them as one
// attribute list and flags the repeats.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use mcp_kafka_sidecar::config::{SaslMechanism, ToolNameSet};
use mcp_kafka_sidecar::scope::{ClientScope, Scope};
use mcp_kafka_sidecar::tool_name::ToolName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod auth;
pub use auth::{AuthSpec, AuthStatus, ClaimMapping, ClaimMappings, OidcSpec};

/// An MCP server for one Kafka cluster, deployed next to it by the operator:
/// a Deployment of the sidecar, a Service, RBAC for its clients, and the tool
/// set that the namespace's McpToolPolicy allows.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpkafka.dev",
    version = "v1alpha1",
    kind = "McpKafkaServer",
    namespaced,
    status = "McpKafkaServerStatus",
    shortname = "mks",
    category = "mcpkafka",
    doc = "An MCP server for one Kafka cluster, fenced to an environment and scoped by Kubernetes RBAC.",
    validation = Rule::new("size(self.metadata.name) <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("the name must be a DNS label starting with a letter, at most 40 characters (it names the server's Service)"),
    printcolumn(name = "Environment", type_ = "string", json_path = ".spec.environment"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Tools", type_ = "integer", json_path = ".status.effectiveToolCount", description = "Tools the server exposes"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.clients) || self.clients.all(c, c.tools.all(t, t in self.tools))")
        .message("every tool of a client must also be listed in spec.tools"),
    validation = Rule::new("!has(self.clients) || !self.clients.exists(c, has(c.users) || has(c.groups)) || (has(self.auth) && has(self.auth.oidc))")
        .message("clients with users or groups need spec.auth.oidc (the identity provider that signs them in)")
)]
pub struct McpKafkaServerSpec {
    /// The environment this server belongs to: dev, staging, prod, or another
    /// name the operator's config defines. It must equal the namespace's
    /// `mcpkafka.dev/environment` label, or nothing is deployed.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub environment: String,
    /// How to reach the Kafka cluster.
    pub kafka: KafkaSpec,
    /// Tools requested. The namespace's McpToolPolicy (or the operator's
    /// default, read-only) may cut this down; status lists what is exposed
    /// and why the rest is not.
    #[schemars(length(max = ToolName::ALL.len()))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u == t))").message("tools must not repeat"))]
    pub tools: Vec<ToolName>,
    /// The names the tools answer to: `native` (list_topics, ...) and
    /// `confluent`, @confluentinc/mcp-confluent's Kafka tool names and
    /// argument shapes (list-topics, consume-messages, ...), each running as
    /// one of the tools above under its RBAC verb. Both may be on.
    #[serde(default = "ToolNameSet::default_sets")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = Rule::new("self.all(n, self.exists_one(m, m == n))").message("toolNames must not repeat"))]
    pub tool_names: Vec<ToolNameSet>,
    /// Who may call which tools. Each client becomes a Role and RoleBinding
    /// granting exactly its tools on this server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new("self.all(c, self.exists_one(d, d.name == c.name))").message("client names must be unique"),
        validation = Rule::new("self.all(c, !has(c.scope) || !has(c.serviceAccountName) || self.exists_one(d, has(d.serviceAccountName) && d.serviceAccountName == c.serviceAccountName))")
            .message("a client with a scope of its own needs a ServiceAccount no other client of this server uses (the server tells callers apart by it)"),
        validation = Rule::new("self.all(c, !has(c.scope) || !has(c.users) || self.exists_one(d, has(d.users) && c.users[0] in d.users))")
            .message("a client with a scope of its own needs a user no other client of this server names (the server tells callers apart by username)")
    )]
    pub clients: Vec<ClientSpec>,
    /// The Kafka topics and consumer groups this server's callers may see and
    /// touch, within the scope of the namespace's McpToolPolicy: what lies
    /// outside that is cut, and status.scopeCuts says what and why. Patterns
    /// are written as in a Strimzi KafkaUser's ACLs: `{name: orders}` (a
    /// literal name), `{name: "*"}` (every name), `{name: team-a.,
    /// patternType: prefix}` (every name starting with `team-a.`). A kind
    /// left out holds nothing: a scope with topics and no groups shows no
    /// groups. Absent: the policy's scope as it is (none: every topic and group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Where audit records go besides stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSpec>,
    /// Where `cluster_metrics` reads the brokers' metrics. Without it that
    /// tool is not exposed (status lists it among the denied tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    /// Take tool calls as Kafka jobs too: records on a request topic,
    /// answered on a reply topic, through the same checks and audit as MCP
    /// calls. Every replica is a worker in one consumer group. The topics
    /// must exist (the sidecar creates none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobsSpec>,
    /// A Schema Registry (Confluent's REST API) for schema-aware payloads:
    /// consume_messages decodes Avro, Protobuf and JSON Schema keys and
    /// values, publish_message can encode against a subject, and the
    /// registry tools (list_subjects, get_schema, check_compatibility,
    /// register_schema, delete_subject) exist. Without it those tools are
    /// not exposed (status lists them among the denied tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySpec>,
    /// How people sign in besides Kubernetes tokens: `oidc`, the
    /// organization's identity provider, as MCP clients do it on their own
    /// (OAuth 2.1 with PKCE). Its users and groups are then clients too
    /// (spec.clients[].users, .groups), authorized by the same RBAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Sidecar replicas (a PodDisruptionBudget is added above 1).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 20))]
    pub replicas: i32,
    /// The sidecar image; default: the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Resources of the sidecar container; default: the operator's configured resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

fn default_replicas() -> i32 {
    1
}

/// The Kafka cluster and how to authenticate to it. Credentials stay in
/// Secrets, mounted as files into the sidecar.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Bootstrap brokers as HOST:PORT.
    #[schemars(length(min = 1, max = 32), inner(length(min = 3, max = 261)))]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[^:/ ]+:[0-9]{1,5}$'))").message("each bootstrap server must be HOST:PORT"))]
    pub bootstrap_servers: Vec<String>,
    /// The cluster ID this server may serve. The sidecar refuses every call
    /// while the connected cluster reports another ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub expected_cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,
}

/// TLS to the brokers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// The CA certificate (PEM) that signed the brokers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// A Secret of type kubernetes.io/tls (`tls.crt`, `tls.key`) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretRef>,
}

/// SASL authentication to the brokers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaslSpec {
    pub mechanism: SaslMechanism,
    /// A Secret in this namespace with keys `username` and `password`.
    pub secret_ref: SecretRef,
}

/// A Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretRef {
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
}

/// One key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
}

/// A caller of this server: an existing ServiceAccount, a token the
/// operator issues and rotates in a Secret, or users and groups of the
/// identity provider of spec.auth.oidc.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.serviceAccountName), has(self.issueToken), has(self.users) || has(self.groups)].exists_one(k, k)")
        .message("a client is exactly one of: serviceAccountName, issueToken, or users and groups of the identity provider"),
    validation = Rule::new("!has(self.scope) || !has(self.groups)")
        .message("a client with groups cannot have a scope of its own: the server tells callers apart by username, and a group has many (give the scope to a client with one user, or narrow spec.scope)"),
    validation = Rule::new("!has(self.scope) || !has(self.users) || size(self.users) == 1")
        .message("a client with a scope of its own names exactly one user (the server tells callers apart by username)")
)]
pub struct ClientSpec {
    /// Names the client's Role, RoleBinding and token Secret.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 40)
    )]
    pub name: String,
    /// An existing ServiceAccount in this namespace whose tokens may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub service_account_name: Option<String>,
    /// Have the operator keep a short-lived token for this client in a
    /// Secret, rotated before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_token: Option<IssueToken>,
    /// Users of the identity provider (spec.auth.oidc), as its username
    /// claim names them, without the prefix: each becomes a RoleBinding
    /// subject of kind User, `<prefix><name>` (e.g. `oidc:alice`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 253)))]
    pub users: Vec<String>,
    /// Groups of the identity provider, as its groups claim names them,
    /// without the prefix: each becomes a subject of kind Group,
    /// `<prefix><name>` (e.g. `oidc:kafka-operators`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
    /// The tools this client may call (a subset of spec.tools).
    #[schemars(length(min = 1, max = ToolName::ALL.len()))]
    pub tools: Vec<ToolName>,
    /// The topics and consumer groups this client may see and touch, within
    /// the server's (spec.scope narrowed by the policy): callers with this
    /// client's ServiceAccount (or its one user) get it instead of the
    /// server's. Written as spec.scope is. Absent: the server's. A client
    /// of groups has none: the server tells callers apart by username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// A token the operator mints with the TokenRequest API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssueToken {
    /// Lifetime of each token (10 minutes to 1 day); rotated at 80%.
    #[serde(default = "default_token_seconds")]
    #[schemars(range(min = 600, max = 86400))]
    pub expiration_seconds: i64,
}

fn default_token_seconds() -> i64 {
    3600
}

/// The sources of broker metrics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// A Prometheus that scrapes the brokers' JMX exporters (Strimzi's metric names).
    pub prometheus: PrometheusSpec,
}

/// A Prometheus to query (HTTP API v1).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || self.url.startsWith('https://')")
    .message("caSecretRef is only for an https:// url"))]
pub struct PrometheusSpec {
    /// Base URL, e.g. `http://prometheus.monitoring.svc:9090` (no credentials, query or fragment).
    #[schemars(
        regex(pattern = r"^https?://[^\s?#@/]+(/[^\s?#@]*)?$"),
        length(max = 2048)
    )]
    pub url: String,
    /// A Secret key holding a bearer token sent with every query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// A Secret key holding the PEM CA bundle of an https:// Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Longest one cluster_metrics call waits for Prometheus (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 30000))]
    pub timeout_ms: Option<i64>,
    /// Label matchers that pick this cluster's series, e.g. `job="kafka",namespace="team-a"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^{}\n\r]+$"), length(max = 1024))]
    pub selector: Option<String>,
}

/// The job path: a job is a record `{jobId, tool, arguments, deadline?}`
/// on `requestTopic` with the caller's token in its `authorization`
/// header; its reply, keyed by jobId, goes to the first reply topic, or
/// to the one its `replyTo` header names (no other).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.requestTopic != self.deadLetterTopic && self.requestTopic != self.journalTopic && self.deadLetterTopic != self.journalTopic && ![self.requestTopic, self.deadLetterTopic, self.journalTopic].exists(t, t in self.replyTopics)")
    .message("the request, reply, dead-letter and journal topics must all differ"))]
pub struct JobsSpec {
    /// The topic jobs are submitted to.
    #[schemars(
        regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"),
        length(min = 1, max = 249)
    )]
    pub request_topic: String,
    /// The topics replies may go to; the first is the default.
    #[schemars(
        length(min = 1, max = 16),
        inner(
            regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"),
            length(min = 1, max = 249)
        )
    )]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u == t))").message("replyTopics must not repeat"))]
    pub reply_topics: Vec<String>,
    /// Where records without a usable jobId go.
    #[schemars(
        regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"),
        length(min = 1, max = 249)
    )]
    pub dead_letter_topic: String,
    /// The workers' journal of started and answered jobs: compacted, with
    /// at least as many partitions as the request topic and a retention of
    /// at least the dedup window.
    #[schemars(
        regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"),
        length(min = 1, max = 249)
    )]
    pub journal_topic: String,
    /// The consumer group; default `mcp-kafka-sidecar.<namespace>.<name>.jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub group: Option<String>,
    /// Most jobs one replica runs at once (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_in_flight: Option<i32>,
    /// How long a jobId is remembered: the same jobId again within it gets
    /// the first reply (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub dedup_window_seconds: Option<i64>,
}

/// The job path the sidecar serves (from the config it was given).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobsStatus {
    pub request_topic: String,
    pub reply_topics: Vec<String>,
    /// The consumer group whose lag is the job backlog.
    pub group: String,
}

/// A Schema Registry speaking Confluent's REST API (Confluent Schema
/// Registry, Apicurio's `/apis/ccompat/v7`, Karapace). Credentials and CA
/// stay in Secrets (or the CA in a ConfigMap), mounted as files the sidecar
/// reads per request, so a rotated Secret is used without a restart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(!has(self.caSecretRef) && !has(self.caConfigMapRef)) || self.url.startsWith('https://')")
        .message("caSecretRef and caConfigMapRef are only for an https:// url"),
    validation = Rule::new("!has(self.caSecretRef) || !has(self.caConfigMapRef)")
        .message("name the CA in caSecretRef or caConfigMapRef, not both"),
    validation = Rule::new("!has(self.basicAuthSecretRef) || !has(self.bearerTokenSecretRef)")
        .message("name basicAuthSecretRef or bearerTokenSecretRef, not both")
)]
pub struct SchemaRegistrySpec {
    /// Base URL of the API, e.g. `http://schema-registry.kafka.svc:8081` or
    /// `http://apicurio.kafka.svc:8080/apis/ccompat/v7` (no credentials,
    /// query or fragment).
    #[schemars(
        regex(pattern = r"^https?://[^\s?#@/]+(/[^\s?#@]*)?$"),
        length(max = 2048)
    )]
    pub url: String,
    /// HTTP basic credentials (Confluent's `basic.auth.user.info`): a
    /// Secret in this namespace with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret_ref: Option<SecretRef>,
    /// A Secret key holding a bearer token sent with every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// A Secret key holding the PEM CA bundle of an https:// registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// A ConfigMap key holding that CA bundle instead (a CA is not secret;
    /// trust bundles are often ConfigMaps, e.g. cert-manager's trust-manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<ConfigMapKeyRef>,
    /// Longest one registry request may take, in milliseconds (default
    /// 5000). A peek whose registry does not answer in time still answers,
    /// showing what it could not decode as bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 30000))]
    pub timeout_ms: Option<i64>,
}

/// One key of a ConfigMap in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConfigMapKeyRef {
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
}

/// The audit trail. Every call is always written to the sidecar's stdout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditSpec {
    /// Also write each record to this Kafka topic (acks=all). While it cannot
    /// be written, mutations are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub kafka_topic: Option<String>,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpKafkaServerStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Reconciled, Ready, PolicyApplied, EnvironmentFenced, Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The tools the server exposes.
    #[serde(default)]
    pub effective_tools: Vec<ToolName>,
    #[serde(default)]
    pub effective_tool_count: i32,
    /// Requested tools that are not exposed, with the reason.
    #[serde(default)]
    pub denied_tools: Vec<DeniedTool>,
    /// The MCP endpoint inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Client name -> the Secret holding its token (issueToken clients).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_secrets: BTreeMap<String, String>,
    /// The topics and consumer groups the server's callers may reach: the
    /// policy's scope narrowed by spec.scope. Absent: every topic and group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_scope: Option<Scope>,
    /// Clients with a scope of their own: what callers with each one's
    /// ServiceAccount (by the username its tokens carry) may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // As many as spec.clients; a bound also keeps the CEL cost estimate of
    // the patterns' rules within the apiserver's budget.
    #[schemars(length(max = 64))]
    pub client_scopes: Vec<ClientScope>,
    /// What spec.scope and the clients' scopes asked for and did not get,
    /// and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope_cuts: Vec<String>,
    /// Set while the sidecar's config wires the job path (spec.jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobsStatus>,
    /// Set while the sidecar's config wires sign-in (spec.auth.oidc): the
    /// identity provider, and the Protected Resource Metadata URL MCP
    /// clients discover it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct DeniedTool {
    pub name: ToolName,
    pub reason: String,
}

/// Which tools a namespace's McpKafkaServers may expose. Only the policy
/// named `default` exists per namespace; it is owned by the platform team
/// (tenants write McpKafkaServers, not policies).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "mcpkafka.dev",
    version = "v1alpha1",
    kind = "McpToolPolicy",
    namespaced,
    shortname = "mtp",
    category = "mcpkafka",
    doc = "The tool policy of a namespace: which MCP Kafka tools its servers may expose, and break-glass windows.",
    validation = Rule::new("self.metadata.name == 'default'").message("the policy of a namespace must be named 'default'"),
    printcolumn(name = "Allow", type_ = "string", json_path = ".spec.allow"),
    printcolumn(name = "Break-glass until", type_ = "string", json_path = ".spec.breakGlass.until"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct McpToolPolicySpec {
    /// Tools allowed, by name or group: observe, mutate, all.
    #[serde(default)]
    #[schemars(length(max = ToolSelector::COUNT))]
    pub allow: Vec<ToolSelector>,
    /// Tools denied even when allowed (deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = ToolSelector::COUNT))]
    pub deny: Vec<ToolSelector>,
    /// A time-boxed exception, e.g. to let a prod server add partitions
    /// during an incident. Ignored once `until` has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// The namespace's ceiling of Kafka topics and consumer groups: its
    /// servers (spec.scope) and their clients may narrow it, never widen it.
    /// Patterns are written as in a Strimzi KafkaUser's ACLs: `{name:
    /// orders}` (a literal name), `{name: "*"}` (every name), `{name:
    /// team-a., patternType: prefix}` (every name starting with `team-a.`);
    /// deny wins over allow. A kind left out holds nothing: a ceiling with
    /// topics and no groups lets no server see a group. Absent: no ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlass {
    /// End of the window (RFC 3339).
    pub until: Time,
    /// Why (an incident or change reference); shown in audit records.
    #[schemars(length(min = 1, max = 512))]
    pub reason: String,
    /// The tools the window opens.
    #[schemars(length(min = 1, max = ToolName::ALL.len()))]
    pub allow: Vec<ToolName>,
}

/// A tool name, or a group: `observe`, `mutate`, `all`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum ToolSelector {
    Group(ToolGroupSelector),
    Tool(ToolName),
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ToolGroupSelector {
    Observe,
    Mutate,
    All,
}

impl ToolSelector {
    /// How many selectors there are: every tool and the three groups (a
    /// policy's lists may name each once).
    pub const COUNT: usize = ToolName::ALL.len() + 3;

    /// The tools this selector stands for.
    pub fn tools(self) -> Vec<ToolName> {
        use mcp_kafka_sidecar::tool_name::ToolGroup;
        match self {
            ToolSelector::Tool(t) => vec![t],
            ToolSelector::Group(ToolGroupSelector::Observe) => {
                ToolName::in_group(ToolGroup::Observe).collect()
            }
            ToolSelector::Group(ToolGroupSelector::Mutate) => {
                ToolName::in_group(ToolGroup::Mutate).collect()
            }
            ToolSelector::Group(ToolGroupSelector::All) => ToolName::ALL.to_vec(),
        }
    }
}

/// A plain string enum in the schema (an untagged enum's anyOf is not a
/// structural schema), so the apiserver rejects unknown names at admission.
impl JsonSchema for ToolSelector {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ToolSelector".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = ["observe", "mutate", "all"]
            .into_iter()
            .chain(ToolName::ALL.iter().map(|t| t.as_str()))
            .collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_names_and_groups() {
        let s: Vec<ToolSelector> =
            serde_json::from_str(r#"["observe", "create_topic", "all"]"#).unwrap();
        assert_eq!(s[0].tools().len(), 15);
        assert_eq!(s[1].tools(), vec![ToolName::CreateTopic]);
        assert_eq!(s[2].tools().len(), ToolName::ALL.len());
        assert!(serde_json::from_str::<ToolSelector>(r#""drop_all""#).is_err());
    }
}
