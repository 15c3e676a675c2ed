//! The sidecar's configuration: one YAML (or JSON) file, rendered by the
//! operator into a ConfigMap and parsed here. Credentials are never in it:
//! it names files (mounted Secrets) that hold them.
//!
//! Parsing is strict (unknown fields are errors) and every error names the
//! field it is about, so a typo fails at start-up instead of being ignored.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::scope::{ClientScope, Scope};
use crate::tool_name::ToolName;

/// The whole configuration of one sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarConfig {
    /// Which server this is (the `McpKafkaServer`).
    pub server: ServerIdentity,
    #[serde(default)]
    pub listen: ListenConfig,
    pub kafka: KafkaConfig,
    /// The tools this server exposes (already cut down by policy).
    pub tools: Vec<ToolName>,
    /// The names those tools answer to: their own (`native`), and
    /// mcp-confluent's (`confluent`), each a translation onto one of `tools`.
    /// Absent: `[native]` (and not rendered, so that a config without compat
    /// names is the same text as before the field existed).
    #[serde(
        default = "ToolNameSet::default_sets",
        skip_serializing_if = "ToolNameSet::is_default"
    )]
    pub tool_names: Vec<ToolNameSet>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    /// How mutations may run in this environment. Absent: by the
    /// environment's name (prod: break-glass, staging: two-phase, else direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutations: Option<MutationRule>,
    /// An open break-glass window (rendered by the operator from the
    /// namespace's policy); it closes by itself at `until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassWindow>,
    /// Two-phase mutations: how long a dry run's plan stays open.
    #[serde(default)]
    pub plans: PlanConfig,
    /// Where audit records go besides stdout.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The topics and consumer groups this server's callers may see and
    /// touch (the operator renders its policy's ceiling narrowed by the
    /// server's own). Absent: every topic and group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Callers with a narrower scope of their own (clients of the server
    /// whose spec narrows it), by username.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_scopes: Vec<ClientScope>,
    /// Where `cluster_metrics` reads the brokers' metrics. Absent: that
    /// tool is off (not listed, not callable), whatever `tools` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// Tool calls taken as records on a Kafka topic (see the `jobs` module
    /// of the server). Absent: no job worker (and not rendered, so that a
    /// config without jobs is the same text as before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobsConfig>,
    /// A Schema Registry (the Confluent REST API) for schema-aware
    /// payloads: `consume_messages` decodes Confluent wire-format keys and
    /// values, `publish_message` can encode against a subject, and the
    /// registry tools exist. Absent: none of that, whatever `tools` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
}

/// The job path: the topics a server's job workers read and write, on the
/// served cluster. The sidecar creates none of them (as for the audit topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobsConfig {
    /// The topic jobs are submitted to: value `{jobId, tool, arguments,
    /// deadline?}`, the caller's bearer token in the `authorization` header.
    pub request_topic: String,
    /// The topics replies may go to: the first unless a job's `replyTo`
    /// header names another of these (a job can name no other topic).
    pub reply_topics: Vec<String>,
    /// Where records without a usable jobId go (with the reason, never
    /// with the token).
    pub dead_letter_topic: String,
    /// The workers' journal: which jobs started and how they were answered,
    /// keyed by jobId, written to the partition of the request's number (so
    /// it needs as many partitions as the request topic). Compacted, with a
    /// retention of at least `dedupWindowSeconds`.
    pub journal_topic: String,
    /// The consumer group every replica joins. Absent:
    /// `mcp-kafka-sidecar.<namespace>.<server>.jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Most jobs one sidecar runs at once; past it, its partitions are
    /// paused (nothing is buffered beyond what a fetch brings).
    #[serde(default = "JobsConfig::default_max_in_flight")]
    pub max_in_flight: u32,
    /// How long a jobId is remembered: a job submitted again with the same
    /// jobId (and record key) within this time gets the first reply again.
    #[serde(default = "JobsConfig::default_dedup_window_seconds")]
    pub dedup_window_seconds: u64,
}

impl JobsConfig {
    pub fn default_max_in_flight() -> u32 {
        16
    }

    pub fn default_dedup_window_seconds() -> u64 {
        600
    }

    /// The consumer group of the workers of `server`.
    pub fn group_for(&self, server: &ServerIdentity) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| match &server.namespace {
                Some(ns) => format!("mcp-kafka-sidecar.{ns}.{}.jobs", server.name),
                None => format!("mcp-kafka-sidecar.{}.jobs", server.name),
            })
    }

    /// What is wrong with this section, as (field under `jobs`, problem).
    fn problem(&self) -> Option<(String, String)> {
        let topics = [
            ("requestTopic".to_string(), &self.request_topic),
            ("deadLetterTopic".to_string(), &self.dead_letter_topic),
            ("journalTopic".to_string(), &self.journal_topic),
        ]
        .into_iter()
        .chain(
            self.reply_topics
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("replyTopics[{i}]"), t)),
        );
        let mut seen: Vec<&String> = Vec::new();
        for (field, topic) in topics {
            if let Some(problem) = topic_name_problem(topic) {
                return Some((format!("jobs.{field}"), problem));
            }
            if seen.contains(&topic) {
                return Some((
                    format!("jobs.{field}"),
                    format!("{topic:?} is named twice: each job topic has one role"),
                ));
            }
            seen.push(topic);
        }
        if self.reply_topics.is_empty() || self.reply_topics.len() > 16 {
            return Some((
                "jobs.replyTopics".into(),
                "must name 1 to 16 topics (the first is the default)".into(),
            ));
        }
        if let Some(group) = &self.group
            && (group.trim().is_empty() || group.len() > 249)
        {
            return Some(("jobs.group".into(), "must be 1 to 249 characters".into()));
        }
        if !(1..=1024).contains(&self.max_in_flight) {
            return Some((
                "jobs.maxInFlight".into(),
                "must be between 1 and 1024".into(),
            ));
        }
        if !(1..=86_400).contains(&self.dedup_window_seconds) {
            return Some((
                "jobs.dedupWindowSeconds".into(),
                "must be between 1 and 86400".into(),
            ));
        }
        None
    }
}

/// A Schema Registry to read and write schemas in, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL of the Confluent-compatible API (`http://` or `https://`,
    /// no query), e.g. `http://schema-registry.kafka.svc:8081` or
    /// Apicurio's `http://apicurio:8080/apis/ccompat/v7`.
    pub url: String,
    /// HTTP basic credentials (Confluent's `basic.auth.user.info`), each
    /// in a file (mounted Secret keys), read per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthFiles>,
    /// A file holding a bearer token sent with every request (read per
    /// request). Not together with `basicAuth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA bundle that signs the registry's certificate (`https` only).
    /// Absent: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Longest one registry request may take (connect and answer).
    #[serde(default = "SchemaRegistryConfig::default_timeout_ms")]
    pub timeout_ms: u64,
}

/// A username and a password, each in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthFiles {
    pub username_file: PathBuf,
    pub password_file: PathBuf,
}

impl SchemaRegistryConfig {
    pub fn default_timeout_ms() -> u64 {
        5_000
    }

    /// What is wrong with this registry's settings, as (field, problem).
    fn problem(&self, at: &str) -> Option<(String, String)> {
        if let Some(problem) = base_url_problem(&self.url) {
            return Some((format!("{at}.url"), problem));
        }
        if self.ca_file.is_some() && !self.url.starts_with("https://") {
            return Some((format!("{at}.caFile"), "is only for an https:// url".into()));
        }
        if self.basic_auth.is_some() && self.bearer_token_file.is_some() {
            return Some((
                format!("{at}.bearerTokenFile"),
                "name basicAuth or bearerTokenFile, not both".into(),
            ));
        }
        if !(100..=30_000).contains(&self.timeout_ms) {
            return Some((
                format!("{at}.timeoutMs"),
                "must be between 100 and 30000".into(),
            ));
        }
        None
    }
}

/// What is wrong with an HTTP base URL of a service the sidecar calls, if
/// anything: it must be http:// or https:// with a host, no credentials
/// (they come from files), no query or fragment.
fn base_url_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest.map(|r| r.split('/').next().unwrap_or_default()) {
        None => return Some(format!("{url:?} is not an http:// or https:// URL")),
        Some("") => return Some("names no host".into()),
        Some(a) if a.contains('@') => {
            return Some("must not carry credentials; name files that hold them".into());
        }
        Some(_) => {}
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Some("must be a base URL without spaces, query or fragment".into());
    }
    None
}

/// The sources of broker metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsConfig {
    /// A Prometheus (HTTP API v1) that scrapes the brokers' JMX exporters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
}

/// A Prometheus server to query, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusSource {
    /// Base URL of the server (`http://` or `https://`, no query), e.g.
    /// `http://prometheus.monitoring.svc:9090`; `/api/v1/query` is appended.
    pub url: String,
    /// A file holding a bearer token sent with every query (a mounted
    /// Secret; read per query, so a rotated token is used at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA bundle that signs the server's certificate (`https` only).
    /// Absent: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Longest one `cluster_metrics` call waits for all its queries.
    #[serde(default = "PrometheusSource::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Label matchers added to every series selector, to pick this
    /// cluster's series in a Prometheus that scrapes several, e.g.
    /// `job="kafka",namespace="team-a"`. Absent: every series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The label that tells brokers apart in per-broker figures.
    #[serde(default = "PrometheusSource::default_broker_label")]
    pub broker_label: String,
}

impl PrometheusSource {
    pub fn default_timeout_ms() -> u64 {
        5_000
    }

    pub fn default_broker_label() -> String {
        "instance".into()
    }

    /// What is wrong with this source, as (field under `at`, problem).
    fn problem(&self, at: &str) -> Option<(String, String)> {
        let field = |name: &str| format!("{at}.{name}");
        if let Some(problem) = base_url_problem(&self.url) {
            return Some((field("url"), problem));
        }
        if self.ca_file.is_some() && !self.url.starts_with("https://") {
            return Some((field("caFile"), "is only for an https:// url".into()));
        }
        if !(100..=30_000).contains(&self.timeout_ms) {
            return Some((field("timeoutMs"), "must be between 100 and 30000".into()));
        }
        if let Some(selector) = &self.selector {
            let odd = selector
                .chars()
                .any(|c| matches!(c, '{' | '}' | '\n' | '\r'));
            if selector.trim().is_empty() || selector.len() > 1024 || odd {
                return Some((
                    field("selector"),
                    "must be label matchers such as job=\"kafka\" (1 to 1024 characters, no braces)"
                        .into(),
                ));
            }
        }
        let label = &self.broker_label;
        let label_ok = label
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !label_ok {
            return Some((
                field("brokerLabel"),
                format!("{label:?} is not a Prometheus label name"),
            ));
        }
        None
    }
}

/// A set of tool names a server answers to: `native`, this server's names
/// (`list_topics`, ...), which are the RBAC verbs; `confluent`,
/// @confluentinc/mcp-confluent's Kafka tool names and argument shapes
/// (`list-topics`, `consume-messages`, ...) for agents moving from it, each
/// running as one native tool under that tool's RBAC verb.
// No doc comments on the variants: schemars would make them a `oneOf`,
// which is not a structural schema for the CRD; this is a plain enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolNameSet {
    Native,
    Confluent,
}

impl ToolNameSet {
    pub const ALL: [ToolNameSet; 2] = [ToolNameSet::Native, ToolNameSet::Confluent];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Confluent => "confluent",
        }
    }

    pub fn default_sets() -> Vec<ToolNameSet> {
        vec![ToolNameSet::Native]
    }

    fn is_default(sets: &[ToolNameSet]) -> bool {
        *sets == Self::default_sets()
    }
}

impl std::str::FromStr for ToolNameSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown tool name set {s:?}; known: native, confluent"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Seconds a plan may be applied after its dry run.
    pub ttl_seconds: u64,
    /// Most plans open at once in this process.
    pub max_open: u64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: 300,
            max_open: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// Also write every record to this topic of the served cluster (acks=all,
    /// idempotent producer). While it cannot accept records, mutations are
    /// refused. The topic must exist: it is never created on the fly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_topic: Option<String>,
}

/// How mutation tools may be used in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MutationRule {
    /// Mutations may be applied directly (dev).
    Direct,
    /// Every mutation is planned (dry run) and then applied (staging).
    TwoPhase,
    /// Two-phase, and only the tools of an open break-glass window (prod).
    BreakGlass,
}

/// A time-boxed exception that opens some mutation tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakGlassWindow {
    /// End of the window (RFC 3339).
    #[schemars(with = "String")]
    pub until: jiff::Timestamp,
    pub reason: String,
    pub tools: Vec<ToolName>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerIdentity {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// `dev`, `staging`, `prod` or another DNS-label-like name.
    pub environment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenConfig {
    /// Address of the HTTP listener (`/mcp`, `/healthz`, `/readyz`, and
    /// `/metrics` unless `metricsAddress` is set).
    #[serde(default = "ListenConfig::default_address")]
    pub address: SocketAddr,
    /// `Host` header values accepted on `/mcp` besides loopback names
    /// (DNS-rebinding protection): e.g. the Service's DNS names.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Address of a second listener that serves only `/metrics`, so that a
    /// Prometheus in another namespace can scrape it while the
    /// NetworkPolicy admits `/mcp` only from the server's environment.
    /// Unset: `/metrics` is served on `address`. Set: `/metrics` is served
    /// only here (the `address` listener answers 404 for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<SocketAddr>,
}

impl ListenConfig {
    /// In a pod; a workstation's standalone mode binds loopback instead.
    fn default_address() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 8090))
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: Self::default_address(),
            allowed_hosts: Vec::new(),
            metrics_address: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: Vec<String>,
    /// Refuse to serve any cluster whose ID differs (environment fence).
    #[serde(default)]
    pub expected_cluster_id: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// Upper bound for one Kafka request made by a tool.
    #[serde(default = "KafkaConfig::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How old the cluster metadata (brokers, topics, partition layout) that
    /// list_topics, list_brokers, cluster_status and describe_topic answer
    /// from may be. 0 asks Kafka on every call. This server's own mutations
    /// drop it at once; another client's change shows within this time.
    /// Offsets, configs and groups are always read live.
    #[serde(default = "KafkaConfig::default_metadata_max_age_ms")]
    pub metadata_max_age_ms: u64,
}

impl KafkaConfig {
    fn default_request_timeout_ms() -> u64 {
        10_000
    }

    pub fn default_metadata_max_age_ms() -> u64 {
        1_000
    }
}

/// PEM files, as mounted from Secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username_file: PathBuf,
    pub password_file: PathBuf,
}

/// Caps that keep every answer inside an agent's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Most items in one list answer (topics, groups, partitions...).
    pub max_list_items: usize,
    /// `consume_messages` messages when the caller does not say.
    pub default_consume_messages: usize,
    /// `consume_messages` hard cap on messages.
    pub max_consume_messages: usize,
    /// `consume_messages` bytes (keys + values) when the caller does not say.
    pub default_consume_bytes: usize,
    /// `consume_messages` hard cap on bytes.
    pub max_consume_bytes: usize,
    /// Longest a `consume_messages` call may wait for messages.
    pub max_consume_timeout_ms: u64,
    /// Largest key + value + headers `publish_message` accepts.
    pub max_publish_bytes: usize,
    /// Largest HTTP request body on `/mcp` (a base64 message of
    /// `maxPublishBytes` must fit). Read per request, so a reload changes
    /// it for existing sessions too.
    pub max_request_bytes: usize,
    /// Tool calls per second per caller, sustained (token bucket).
    pub calls_per_second: u32,
    /// Tool calls a caller may make at once above the sustained rate.
    pub call_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_list_items: 500,
            default_consume_messages: 10,
            max_consume_messages: 100,
            default_consume_bytes: 64 * 1024,
            max_consume_bytes: 1024 * 1024,
            max_consume_timeout_ms: 10_000,
            max_publish_bytes: 1024 * 1024,
            max_request_bytes: 4 * 1024 * 1024,
            calls_per_second: 50,
            call_burst: 100,
        }
    }
}

/// Who may call. The Kubernetes mode (TokenReview + SubjectAccessReview) is
/// the default; `none` is only for a dev server on loopback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The audience a caller's token must carry; default
    /// `mcpkafka.dev/<namespace>/<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// How long an allowed decision (a token's identity, a tool grant) is reused.
    pub allow_cache_seconds: u64,
    /// How long a refusal is reused (short: a new RoleBinding takes effect soon).
    pub deny_cache_seconds: u64,
    /// Most decisions kept, per cache.
    pub cache_entries: u64,
    /// TokenReviews per second, over all callers, for tokens this server
    /// has not accepted before (bursts of twice as many). Requests over it
    /// get HTTP 429 with `Retry-After`, and no TokenReview: anyone who can
    /// reach the port could otherwise make the apiserver check one random
    /// token per request.
    pub token_reviews_per_second: u32,
    /// The same, per source IP address (bursts of twice as many): one noisy
    /// client cannot spend the whole server's allowance.
    pub token_reviews_per_source_per_second: u32,
    /// Sign-in with an OpenID Connect identity provider, as the MCP
    /// authorization spec describes it: this server becomes an OAuth
    /// resource server that verifies the provider's tokens itself. Its
    /// callers are still authorized by SubjectAccessReview, as the user and
    /// groups their token names. Kubernetes tokens keep working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
}

/// An identity provider whose access tokens (JWTs) this server accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (`https://`), exactly as its tokens'
    /// `iss`; its discovery document is
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// PEM CA bundle that signs the provider's certificate. Absent: the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This server's public MCP URL, as clients connect to it (e.g.
    /// `https://kafka-mcp.example.com/mcp`): the `resource` of its
    /// Protected Resource Metadata (RFC 9728) and the audience (RFC 8707)
    /// a token must carry. `http://` only on a loopback host.
    pub resource: String,
    /// Further `aud` values accepted besides `resource` (e.g. for a
    /// provider that sets the audience by mapper rather than by the
    /// `resource` parameter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The claim that names the user.
    #[serde(default = "OidcConfig::default_username_claim")]
    pub username_claim: String,
    /// Put before the username, so that IdP users cannot pass for
    /// Kubernetes ones (`oidc:alice`); as the apiserver's
    /// `claimMappings.username.prefix`.
    #[serde(default = "OidcConfig::default_prefix")]
    pub username_prefix: String,
    /// The claim that lists the user's groups (a string or a list of them).
    #[serde(default = "OidcConfig::default_groups_claim")]
    pub groups_claim: String,
    /// Put before each group name (`oidc:kafka-operators`).
    #[serde(default = "OidcConfig::default_prefix")]
    pub groups_prefix: String,
    /// Scopes clients should ask for, published as `scopes_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Tolerance for the provider's and this server's clocks when checking
    /// `exp`, `nbf` and `iat`.
    #[serde(default = "OidcConfig::default_clock_skew_seconds")]
    pub clock_skew_seconds: u64,
    /// How often the provider's signing keys are fetched again. A token
    /// signed by a key not yet known makes a fetch sooner (at most one per
    /// 10 seconds).
    #[serde(default = "OidcConfig::default_refresh_seconds")]
    pub refresh_seconds: u64,
    /// How long fetched keys keep serving while the provider cannot be
    /// reached; past that, its tokens are refused until it answers again.
    #[serde(default = "OidcConfig::default_keys_max_age_seconds")]
    pub keys_max_age_seconds: u64,
    /// Longest one request to the provider may take.
    #[serde(default = "OidcConfig::default_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
}

impl OidcConfig {
    pub fn default_username_claim() -> String {
        "sub".into()
    }

    pub fn default_groups_claim() -> String {
        "groups".into()
    }

    pub fn default_prefix() -> String {
        "oidc:".into()
    }

    pub fn default_clock_skew_seconds() -> u64 {
        30
    }

    pub fn default_refresh_seconds() -> u64 {
        300
    }

    pub fn default_keys_max_age_seconds() -> u64 {
        86_400
    }

    pub fn default_fetch_timeout_ms() -> u64 {
        5_000
    }

    /// Where the Protected Resource Metadata of `resource` is served (RFC
    /// 9728 section 3.1): `/.well-known/oauth-protected-resource` put
    /// between the host and the resource's path.
    pub fn metadata_url(&self) -> String {
        let (scheme, rest) = self
            .resource
            .split_once("://")
            .unwrap_or(("https", &self.resource));
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let path = path.trim_end_matches('/');
        format!("{scheme}://{authority}/.well-known/oauth-protected-resource{path}")
    }

    /// What is wrong with this provider's settings, as (field, problem).
    fn problem(&self) -> Option<(String, String)> {
        let field = |name: &str| format!("auth.oidc.{name}");
        if let Some(problem) = base_url_problem(&self.issuer) {
            return Some((field("issuer"), problem));
        }
        if !self.issuer.starts_with("https://") {
            return Some((
                field("issuer"),
                "must be an https:// URL (OpenID Connect requires it)".into(),
            ));
        }
        if let Some(problem) = base_url_problem(&self.resource) {
            return Some((field("resource"), problem));
        }
        let host = self
            .resource
            .trim_start_matches("http://")
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.resource.starts_with("http://[::1]");
        if self.resource.starts_with("http://") && !loopback {
            return Some((
                field("resource"),
                "must be an https:// URL unless its host is loopback".into(),
            ));
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Some((field("audiences"), "must not hold an empty audience".into()));
        }
        for (name, claim) in [
            ("usernameClaim", &self.username_claim),
            ("groupsClaim", &self.groups_claim),
        ] {
            if claim.trim().is_empty() {
                return Some((field(name), "must name a claim".into()));
            }
        }
        if self.clock_skew_seconds > 300 {
            return Some((field("clockSkewSeconds"), "must be at most 300".into()));
        }
        if !(10..=86_400).contains(&self.refresh_seconds) {
            return Some((
                field("refreshSeconds"),
                "must be between 10 and 86400".into(),
            ));
        }
        if self.keys_max_age_seconds < self.refresh_seconds {
            return Some((
                field("keysMaxAgeSeconds"),
                "must be at least refreshSeconds".into(),
            ));
        }
        if !(100..=30_000).contains(&self.fetch_timeout_ms) {
            return Some((
                field("fetchTimeoutMs"),
                "must be between 100 and 30000".into(),
            ));
        }
        None
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::default(),
            audience: None,
            allow_cache_seconds: 30,
            deny_cache_seconds: 5,
            cache_entries: 10_000,
            token_reviews_per_second: 25,
            token_reviews_per_source_per_second: 5,
            oidc: None,
        }
    }
}

impl AuthConfig {
    /// The audience tokens must be minted for.
    pub fn audience_for(&self, server: &ServerIdentity) -> String {
        self.audience.clone().unwrap_or_else(|| {
            default_audience(
                server.namespace.as_deref().unwrap_or("default"),
                &server.name,
            )
        })
    }
}

/// The audience of a server's tokens unless its config names another: the
/// operator mints tokens for it and the sidecar accepts them, so both call
/// this one function (the operator uses this crate without its server feature).
pub fn default_audience(namespace: &str, server: &str) -> String {
    format!("mcpkafka.dev/{namespace}/{server}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthMode {
    #[default]
    Kubernetes,
    None,
}

/// A config that cannot be used, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sidecar config at `{field}`: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl SidecarConfig {
    /// Parses YAML or JSON and validates the result.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: SidecarConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(
                if path == "." {
                    "(document)".to_string()
                } else {
                    path
                },
                e.into_inner().to_string(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Renders the config as the operator writes it into a ConfigMap.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a config always serializes")
    }

    /// Checks what the types cannot: non-empty lists, sane caps, names, and
    /// the one place where `auth: none` is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_dns_label(&self.server.environment) {
            return Err(ConfigError::new(
                "server.environment",
                format!(
                    "{:?} is not a lowercase DNS label (e.g. dev, staging, prod)",
                    self.server.environment
                ),
            ));
        }
        if self.server.name.trim().is_empty() {
            return Err(ConfigError::new("server.name", "must not be empty"));
        }
        if self.kafka.bootstrap_servers.is_empty() {
            return Err(ConfigError::new(
                "kafka.bootstrapServers",
                "must name at least one broker",
            ));
        }
        for (i, server) in self.kafka.bootstrap_servers.iter().enumerate() {
            let ok = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError::new(
                    format!("kafka.bootstrapServers[{i}]"),
                    format!("{server:?} is not HOST:PORT"),
                ));
            }
        }
        if !(100..=300_000).contains(&self.kafka.request_timeout_ms) {
            return Err(ConfigError::new(
                "kafka.requestTimeoutMs",
                "must be between 100 and 300000",
            ));
        }
        if self.kafka.metadata_max_age_ms > 60_000 {
            return Err(ConfigError::new(
                "kafka.metadataMaxAgeMs",
                "must be between 0 (always ask Kafka) and 60000",
            ));
        }
        let l = &self.limits;
        let caps = [
            ("limits.maxListItems", l.max_list_items, 1),
            ("limits.maxConsumeMessages", l.max_consume_messages, 1),
            ("limits.maxConsumeBytes", l.max_consume_bytes, 1),
            ("limits.maxPublishBytes", l.max_publish_bytes, 1),
            ("limits.callsPerSecond", l.calls_per_second as usize, 1),
            ("limits.callBurst", l.call_burst as usize, 1),
        ];
        for (field, value, min) in caps {
            if value < min {
                return Err(ConfigError::new(field, format!("must be at least {min}")));
            }
        }
        if l.default_consume_messages > l.max_consume_messages || l.default_consume_messages == 0 {
            return Err(ConfigError::new(
                "limits.defaultConsumeMessages",
                "must be between 1 and maxConsumeMessages",
            ));
        }
        if l.default_consume_bytes > l.max_consume_bytes || l.default_consume_bytes == 0 {
            return Err(ConfigError::new(
                "limits.defaultConsumeBytes",
                "must be between 1 and maxConsumeBytes",
            ));
        }
        // base64 grows 3 bytes to 4; the JSON-RPC envelope needs some room too.
        let largest_publish = l.max_publish_bytes / 3 * 4 + 64 * 1024;
        if l.max_request_bytes < largest_publish {
            return Err(ConfigError::new(
                "limits.maxRequestBytes",
                format!(
                    "must be at least {largest_publish} so that a base64 message of maxPublishBytes fits"
                ),
            ));
        }
        if self.tool_names.is_empty() {
            return Err(ConfigError::new(
                "toolNames",
                "must name at least one of native, confluent",
            ));
        }
        for (i, set) in self.tool_names.iter().enumerate() {
            if self.tool_names[..i].contains(set) {
                return Err(ConfigError::new(
                    format!("toolNames[{i}]"),
                    format!("{} is named twice", set.as_str()),
                ));
            }
        }
        if !(1..=3600).contains(&self.plans.ttl_seconds) {
            return Err(ConfigError::new(
                "plans.ttlSeconds",
                "must be between 1 and 3600",
            ));
        }
        if self.plans.max_open == 0 {
            return Err(ConfigError::new("plans.maxOpen", "must be at least 1"));
        }
        if let Some(problem) = self
            .audit
            .kafka_topic
            .as_deref()
            .and_then(topic_name_problem)
        {
            return Err(ConfigError::new("audit.kafkaTopic", problem));
        }
        if self.auth.mode == AuthMode::Kubernetes && self.server.namespace.is_none() {
            return Err(ConfigError::new(
                "server.namespace",
                "is required with auth.mode kubernetes (RBAC grants are namespaced)",
            ));
        }
        if self.auth.allow_cache_seconds > 600 || self.auth.deny_cache_seconds > 600 {
            return Err(ConfigError::new(
                "auth",
                "decision caches may keep an answer for at most 600 seconds",
            ));
        }
        let reviews = [
            (
                "auth.tokenReviewsPerSecond",
                self.auth.token_reviews_per_second,
            ),
            (
                "auth.tokenReviewsPerSourcePerSecond",
                self.auth.token_reviews_per_source_per_second,
            ),
        ];
        for (field, value) in reviews {
            if !(1..=10_000).contains(&value) {
                return Err(ConfigError::new(field, "must be between 1 and 10000"));
            }
        }
        if let Some(oidc) = &self.auth.oidc {
            if self.auth.mode != AuthMode::Kubernetes {
                return Err(ConfigError::new(
                    "auth.oidc",
                    "needs auth.mode kubernetes (its users are authorized by SubjectAccessReview)",
                ));
            }
            if let Some((field, problem)) = oidc.problem() {
                return Err(ConfigError::new(field, problem));
            }
        }
        if self.listen.metrics_address == Some(self.listen.address) {
            return Err(ConfigError::new(
                "listen.metricsAddress",
                "must differ from listen.address (it is a second listener, for /metrics only)",
            ));
        }
        if let Some((field, problem)) = self.scope.as_ref().and_then(|s| s.problem("scope")) {
            return Err(ConfigError::new(field, problem));
        }
        for (i, client) in self.client_scopes.iter().enumerate() {
            if self.client_scopes[..i]
                .iter()
                .any(|c| c.username == client.username)
            {
                return Err(ConfigError::new(
                    format!("clientScopes[{i}].username"),
                    format!("{:?} has a scope already", client.username),
                ));
            }
            if let Some((field, problem)) =
                client.scope.problem(&format!("clientScopes[{i}].scope"))
            {
                return Err(ConfigError::new(field, problem));
            }
        }
        if let Some(metrics) = &self.metrics {
            match &metrics.prometheus {
                None => {
                    return Err(ConfigError::new(
                        "metrics",
                        "must name a source (prometheus), or be left out",
                    ));
                }
                Some(source) => {
                    if let Some((field, problem)) = source.problem("metrics.prometheus") {
                        return Err(ConfigError::new(field, problem));
                    }
                }
            }
        }
        if let Some((field, problem)) = self.jobs.as_ref().and_then(JobsConfig::problem) {
            return Err(ConfigError::new(field, problem));
        }
        if let Some((field, problem)) = self
            .schema_registry
            .as_ref()
            .and_then(|r| r.problem("schemaRegistry"))
        {
            return Err(ConfigError::new(field, problem));
        }
        if self.auth.mode == AuthMode::None
            && (self.server.environment != "dev" || !self.listen.address.ip().is_loopback())
        {
            return Err(ConfigError::new(
                "auth.mode",
                "`none` is allowed only for environment dev on a loopback listen address",
            ));
        }
        Ok(())
    }

    /// The scope of a caller: its client's own, else the server's. `None`:
    /// unscoped (every topic and group).
    pub fn scope_for(&self, username: Option<&str>) -> Option<&Scope> {
        username
            .and_then(|u| self.client_scopes.iter().find(|c| c.username == u))
            .map(|c| &c.scope)
            .or(self.scope.as_ref())
    }

    /// Whether a tool is enabled: listed in `tools`, and for
    /// `cluster_metrics` with a metrics source to answer from.
    pub fn enables(&self, tool: ToolName) -> bool {
        self.tools.contains(&tool)
            && (tool != ToolName::ClusterMetrics || self.has_metrics_source())
            && (!tool.needs_schema_registry() || self.schema_registry.is_some())
    }

    /// Whether `cluster_metrics` has somewhere to read metrics from.
    pub fn has_metrics_source(&self) -> bool {
        self.metrics
            .as_ref()
            .is_some_and(|m| m.prometheus.is_some())
    }

    /// Whether the tools answer to the names of `set`.
    pub fn answers_to(&self, set: ToolNameSet) -> bool {
        self.tool_names.contains(&set)
    }

    /// The mutation rule in force: the configured one, or the secure
    /// default for the environment's name.
    pub fn mutation_rule(&self) -> MutationRule {
        self.mutations
            .unwrap_or(match self.server.environment.as_str() {
                "prod" => MutationRule::BreakGlass,
                "staging" => MutationRule::TwoPhase,
                _ => MutationRule::Direct,
            })
    }

    /// Whether `tool` may be used at `now`, and if not why (environment rules:
    /// in break-glass environments a mutation needs an open window naming it).
    /// Two-phase rules are checked per call, where the arguments are known.
    pub fn environment_allows(&self, tool: ToolName, now: jiff::Timestamp) -> Result<(), String> {
        if !tool.is_mutation() || self.mutation_rule() != MutationRule::BreakGlass {
            return Ok(());
        }
        match &self.break_glass {
            Some(w) if w.until > now && w.tools.contains(&tool) => Ok(()),
            Some(w) if w.until > now => Err(format!(
                "{tool} is a mutation in {}; the open break-glass window does not name it",
                self.server.environment
            )),
            _ => Err(format!(
                "{tool} is a mutation in {}: it needs an open break-glass window",
                self.server.environment
            )),
        }
    }
}

/// What is wrong with a topic name by Kafka's own rule (1..=249 of
/// `[a-zA-Z0-9._-]`, not `.` or `..`), if anything.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 249 {
        return Some(format!(
            "topic name must be 1 to 249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some("topic name cannot be '.' or '..'".into());
    }
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))?;
    Some(format!(
        "topic name {:?} contains {:?}; only letters, digits, '.', '_' and '-' are allowed",
        name.escape_debug().to_string(),
        bad
    ))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
server: {name: orders, namespace: team-a, environment: staging}
kafka: {bootstrapServers: ["kafka-0.kafka:9092"]}
tools: [list_topics, describe_topic]
"#;

    #[test]
    fn the_default_audience_is_the_one_the_operator_mints_for() {
        let mut config = SidecarConfig::parse(MINIMAL).unwrap();
        assert_eq!(
            config.auth.audience_for(&config.server),
            "mcpkafka.dev/team-a/orders"
        );
        assert_eq!(
            config.auth.audience_for(&config.server),
            default_audience("team-a", "orders")
        );
        config.auth.audience = Some("another".into());
        assert_eq!(config.auth.audience_for(&config.server), "another");
    }

    #[test]
    fn an_identity_provider_is_checked_and_its_metadata_url_follows_rfc_9728() {
        let with = |oidc: &str| format!("{MINIMAL}auth:\n  oidc: {oidc}\n");
        let c = SidecarConfig::parse(&with(
            "{issuer: \"https://idp.example/realms/mcp\", resource: \"https://mcp.example/mcp\"}",
        ))
        .unwrap();
        let oidc = c.auth.oidc.as_ref().unwrap();
        assert_eq!(
            oidc.metadata_url(),
            "https://mcp.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            (oidc.username_claim.as_str(), oidc.username_prefix.as_str()),
            ("sub", "oidc:")
        );
        let mut root = oidc.clone();
        root.resource = "http://127.0.0.1:8090/".into();
        assert_eq!(
            root.metadata_url(),
            "http://127.0.0.1:8090/.well-known/oauth-protected-resource"
        );
        for (oidc, field) in [
            (
                "{issuer: \"http://idp.example\", resource: \"https://mcp.example/mcp\"}",
                "auth.oidc.issuer",
            ),
            (
                "{issuer: \"https://idp.example\", resource: \"http://mcp.example/mcp\"}",
                "auth.oidc.resource",
            ),
            (
                "{issuer: \"https://idp.example\", resource: \"https://mcp.example/mcp?x=1\"}",
                "auth.oidc.resource",
            ),
            (
                "{issuer: \"https://idp.example\", resource: \"https://m/mcp\", groupsClaim: \" \"}",
                "auth.oidc.groupsClaim",
            ),
            (
                "{issuer: \"https://idp.example\", resource: \"https://m/mcp\", refreshSeconds: 600, keysMaxAgeSeconds: 60}",
                "auth.oidc.keysMaxAgeSeconds",
            ),
        ] {
            assert_eq!(error_for(&with(oidc)).field, field, "{oidc}");
        }
        // Loopback may be plain http (a port-forward).
        SidecarConfig::parse(&with(
            "{issuer: \"https://idp.example\", resource: \"http://localhost:8080/mcp\"}",
        ))
        .unwrap();
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let c = SidecarConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.listen.address.to_string(), "0.0.0.0:8090");
        assert_eq!(c.auth.mode, AuthMode::Kubernetes);
        assert_eq!(c.limits, Limits::default());
        assert!(c.enables(ToolName::ListTopics) && !c.enables(ToolName::CreateTopic));
    }

    #[test]
    fn rendering_and_parsing_round_trip() {
        let c = SidecarConfig::parse(MINIMAL).unwrap();
        assert_eq!(SidecarConfig::parse(&c.to_yaml()).unwrap(), c);
    }

    fn error_for(text: &str) -> ConfigError {
        SidecarConfig::parse(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let e = error_for(&MINIMAL.replace("bootstrapServers", "bootstrapServer"));
        assert_eq!(e.field, "kafka.bootstrapServer", "{e}");
        assert!(e.message.contains("bootstrapServer"), "{e}");

        let e = error_for(&MINIMAL.replace("describe_topic", "drop_everything"));
        assert_eq!(e.field, "tools[1]", "{e}");

        let e = error_for(&MINIMAL.replace(r#"["kafka-0.kafka:9092"]"#, "[]"));
        assert_eq!(e.field, "kafka.bootstrapServers");

        let e = error_for(&MINIMAL.replace("kafka-0.kafka:9092", "kafka-0.kafka"));
        assert_eq!(e.field, "kafka.bootstrapServers[0]");

        let e = error_for(&MINIMAL.replace("staging", "Prod!"));
        assert_eq!(e.field, "server.environment");

        let e = error_for(&format!(
            "{MINIMAL}limits: {{maxConsumeMessages: 5, defaultConsumeMessages: 10}}\n"
        ));
        assert_eq!(e.field, "limits.defaultConsumeMessages");

        let e = error_for(&format!("{MINIMAL}listen: {{address: 'not an address'}}\n"));
        assert_eq!(e.field, "listen.address");

        let e = error_for(&format!(
            "{MINIMAL}listen: {{address: '0.0.0.0:8090', metricsAddress: '0.0.0.0:8090'}}\n"
        ));
        assert_eq!(e.field, "listen.metricsAddress", "{e}");

        let e = error_for(&format!("{MINIMAL}auth: {{tokenReviewsPerSecond: 0}}\n"));
        assert_eq!(e.field, "auth.tokenReviewsPerSecond", "{e}");
    }

    #[test]
    fn auth_none_only_for_dev_on_loopback() {
        let none = format!("{MINIMAL}auth: {{mode: none}}\n");
        assert_eq!(error_for(&none).field, "auth.mode", "staging");
        let dev_any = none.replace("staging", "dev");
        assert_eq!(error_for(&dev_any).field, "auth.mode", "dev on 0.0.0.0");
        let dev_loopback = format!("{dev_any}listen: {{address: '127.0.0.1:8090'}}\n");
        assert_eq!(
            SidecarConfig::parse(&dev_loopback).unwrap().auth.mode,
            AuthMode::None
        );
    }

    #[test]
    fn break_glass_environments_open_mutations_only_inside_a_window() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let prod = SidecarConfig::parse(&MINIMAL.replace("staging", "prod")).unwrap();
        assert_eq!(prod.mutation_rule(), MutationRule::BreakGlass);
        let now = t("2026-11-21T12:00:00Z");
        assert!(prod.environment_allows(ToolName::ListTopics, now).is_ok());
        assert!(
            prod.environment_allows(ToolName::CreateTopic, now)
                .unwrap_err()
                .contains("needs an open break-glass window")
        );
        let window = format!(
            "{}breakGlass: {{until: '2026-11-21T13:00:00Z', reason: INC-1, tools: [create_partitions]}}\n",
            MINIMAL.replace("staging", "prod")
        );
        let open = SidecarConfig::parse(&window).unwrap();
        assert!(
            open.environment_allows(ToolName::CreatePartitions, now)
                .is_ok()
        );
        assert!(
            open.environment_allows(ToolName::CreateTopic, now)
                .unwrap_err()
                .contains("does not name it")
        );
        assert!(
            open.environment_allows(ToolName::CreatePartitions, t("2026-11-21T13:00:00Z"))
                .is_err(),
            "closes by itself"
        );
        assert_eq!(
            SidecarConfig::parse(MINIMAL).unwrap().mutation_rule(),
            MutationRule::TwoPhase
        );
        assert_eq!(
            SidecarConfig::parse(&format!("{MINIMAL}mutations: direct\n"))
                .unwrap()
                .mutation_rule(),
            MutationRule::Direct
        );
    }

    #[test]
    fn tool_names_default_to_native_and_are_rendered_only_when_set() {
        let native = SidecarConfig::parse(MINIMAL).unwrap();
        assert_eq!(native.tool_names, vec![ToolNameSet::Native]);
        assert!(
            native.answers_to(ToolNameSet::Native) && !native.answers_to(ToolNameSet::Confluent)
        );
        // A server without compat names renders the same text as before the
        // field existed: an operator upgrade does not roll every sidecar.
        assert!(
            !native.to_yaml().contains("toolNames"),
            "{}",
            native.to_yaml()
        );

        let both =
            SidecarConfig::parse(&format!("{MINIMAL}toolNames: [native, confluent]\n")).unwrap();
        assert!(both.answers_to(ToolNameSet::Native) && both.answers_to(ToolNameSet::Confluent));
        assert_eq!(SidecarConfig::parse(&both.to_yaml()).unwrap(), both);
        let compat_only =
            SidecarConfig::parse(&format!("{MINIMAL}toolNames: [confluent]\n")).unwrap();
        assert!(!compat_only.answers_to(ToolNameSet::Native));
        assert!(compat_only.to_yaml().contains("toolNames"));
    }

    #[test]
    fn tool_names_are_one_or_both_known_sets_each_once() {
        let e = error_for(&format!("{MINIMAL}toolNames: []\n"));
        assert_eq!(e.field, "toolNames", "{e}");
        let e = error_for(&format!("{MINIMAL}toolNames: [native, mcp-confluent]\n"));
        assert_eq!(e.field, "toolNames[1]", "{e}");
        let e = error_for(&format!("{MINIMAL}toolNames: [confluent, confluent]\n"));
        assert_eq!(e.field, "toolNames[1]", "{e}");
        assert!(e.message.contains("confluent is named twice"), "{e}");
        assert_eq!(
            "confluent".parse::<ToolNameSet>(),
            Ok(ToolNameSet::Confluent)
        );
        assert!(
            "Confluent"
                .parse::<ToolNameSet>()
                .unwrap_err()
                .contains("native, confluent")
        );
    }

    #[test]
    fn cluster_metrics_is_enabled_only_with_a_source() {
        let asked = MINIMAL.replace("describe_topic]", "describe_topic, cluster_metrics]");
        let without = SidecarConfig::parse(&asked).unwrap();
        assert!(without.tools.contains(&ToolName::ClusterMetrics));
        assert!(!without.enables(ToolName::ClusterMetrics), "no source");
        assert!(without.enables(ToolName::ListTopics));
        let with = SidecarConfig::parse(&format!(
            "{asked}metrics: {{prometheus: {{url: 'http://prometheus.monitoring:9090'}}}}\n"
        ))
        .unwrap();
        assert!(with.enables(ToolName::ClusterMetrics));
        let source = with.metrics.as_ref().unwrap().prometheus.as_ref().unwrap();
        assert_eq!(source.timeout_ms, 5_000);
        assert_eq!(source.broker_label, "instance");
        assert_eq!(SidecarConfig::parse(&with.to_yaml()).unwrap(), with);
        // Not asked for, not enabled, source or not.
        let unasked = SidecarConfig::parse(&format!(
            "{MINIMAL}metrics: {{prometheus: {{url: 'http://p:9090'}}}}\n"
        ))
        .unwrap();
        assert!(!unasked.enables(ToolName::ClusterMetrics));
    }

    #[test]
    fn a_metrics_source_is_validated() {
        let cases = [
            ("{}", "metrics"),
            (
                "{prometheus: {url: 'prometheus:9090'}}",
                "metrics.prometheus.url",
            ),
            ("{prometheus: {url: 'http://'}}", "metrics.prometheus.url"),
            (
                "{prometheus: {url: 'http://u:pw@p:9090'}}",
                "metrics.prometheus.url",
            ),
            (
                "{prometheus: {url: 'http://p:9090/?x=1'}}",
                "metrics.prometheus.url",
            ),
            (
                "{prometheus: {url: 'http://p:9090', caFile: /ca.crt}}",
                "metrics.prometheus.caFile",
            ),
            (
                "{prometheus: {url: 'http://p:9090', timeoutMs: 50}}",
                "metrics.prometheus.timeoutMs",
            ),
            (
                "{prometheus: {url: 'http://p:9090', timeoutMs: 60000}}",
                "metrics.prometheus.timeoutMs",
            ),
            (
                "{prometheus: {url: 'http://p:9090', selector: '}) or vector(1'}}",
                "metrics.prometheus.selector",
            ),
            (
                "{prometheus: {url: 'http://p:9090', brokerLabel: 'pod-name'}}",
                "metrics.prometheus.brokerLabel",
            ),
            (
                "{prometheus: {url: 'http://p:9090', token: x}}",
                "metrics.prometheus.token",
            ),
        ];
        for (metrics, field) in cases {
            let e = error_for(&format!("{MINIMAL}metrics: {metrics}\n"));
            assert_eq!(e.field, field, "{metrics}: {e}");
        }
        let ok = format!(
            "{MINIMAL}metrics: {{prometheus: {{url: 'https://p.monitoring:9090/prom', caFile: /ca.crt, bearerTokenFile: /t, timeoutMs: 2000, selector: 'job=\"kafka\"', brokerLabel: pod}}}}\n"
        );
        SidecarConfig::parse(&ok).unwrap();
    }

    #[test]
    fn jobs_are_optional_validated_and_rendered_only_when_set() {
        let none = SidecarConfig::parse(MINIMAL).unwrap();
        assert!(none.jobs.is_none());
        assert!(!none.to_yaml().contains("jobs"), "{}", none.to_yaml());
        let jobs = "jobs: {requestTopic: j.req, replyTopics: [j.rep, j.rep2], deadLetterTopic: j.dlq, journalTopic: j.journal}\n";
        let with = SidecarConfig::parse(&format!("{MINIMAL}{jobs}")).unwrap();
        let section = with.jobs.as_ref().unwrap();
        assert_eq!(
            (section.max_in_flight, section.dedup_window_seconds),
            (16, 600)
        );
        assert_eq!(
            section.group_for(&with.server),
            "mcp-kafka-sidecar.team-a.orders.jobs"
        );
        assert_eq!(SidecarConfig::parse(&with.to_yaml()).unwrap(), with);
        let cases = [
            (
                jobs.replace("[j.rep, j.rep2]", "[j.req]"),
                "jobs.replyTopics[0]",
            ),
            (jobs.replace("[j.rep, j.rep2]", "[]"), "jobs.replyTopics"),
            (jobs.replace("j.dlq", "'bad topic'"), "jobs.deadLetterTopic"),
            (jobs.replace("j.journal", "j.dlq"), "jobs.journalTopic"),
            (jobs.replace("}", ", maxInFlight: 0}"), "jobs.maxInFlight"),
            (
                jobs.replace("}", ", dedupWindowSeconds: 0}"),
                "jobs.dedupWindowSeconds",
            ),
            (jobs.replace("}", ", token: x}"), "jobs.token"),
        ];
        for (text, field) in cases {
            let e = error_for(&format!("{MINIMAL}{text}"));
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn json_is_accepted_too() {
        let json = r#"{"server":{"name":"o","namespace":"n","environment":"dev"},"kafka":{"bootstrapServers":["k:9092"]},"tools":[]}"#;
        assert!(SidecarConfig::parse(json).unwrap().tools.is_empty());
    }
}
