//! Prometheus metrics of the sidecar, in the text format, through
//! prometheus-client.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    /// `ok` or the error code.
    outcome: String,
}

/// A request to Kafka: which of the sidecar's clients sent it, and its API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KafkaRequestLabels {
    /// `admin`, `producer` or `lookup` (`crate::kafka::ClientRole`).
    client: &'static str,
    /// The Kafka API as librdkafka names it (`Metadata`, `ListOffsets`, ...).
    request: String,
}

/// Requests the sidecar's Kafka clients sent, by client and API. For the
/// whole process, not in `Metrics`: the clients count into it from
/// librdkafka's statistics (see `crate::kafka`), and clients that a config
/// reload replaces must not take their counts with them.
static KAFKA_REQUESTS: LazyLock<Family<KafkaRequestLabels, Counter>> =
    LazyLock::new(Family::default);

/// Counts `sent` more `request`s by `client` in `mcp_kafka_broker_requests_total`.
/// `request` comes from librdkafka's fixed table of API names (about 70);
/// anything else is counted as `other`, so that the label set stays bounded.
pub fn count_kafka_requests(client: &'static str, request: &str, sent: u64) {
    let known = !request.is_empty()
        && request.len() <= 48
        && request.bytes().all(|b| b.is_ascii_alphanumeric());
    let request = if known { request } else { "other" };
    KAFKA_REQUESTS
        .get_or_create(&KafkaRequestLabels {
            client,
            request: request.to_string(),
        })
        .inc_by(sent);
}

fn register_kafka_requests(registry: &mut Registry) {
    registry.register(
        "broker_requests",
        "Requests sent to Kafka brokers by client (admin, producer, lookup; not the peek \
         consumers) and API (Metadata, ListOffsets, Produce, ...), from librdkafka's \
         statistics: updated every 15 s",
        KAFKA_REQUESTS.clone(),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: String,
}

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    duration: Family<ToolLabel, Histogram>,
    /// MCP HTTP requests being served now (see [`Metrics::request_started`]).
    inflight_requests: Gauge,
    /// MCP sessions open now (set when scraped).
    pub active_sessions: Gauge,
    /// 1 while Kafka answered the health probe recently.
    pub kafka_up: Gauge,
    pub config_reloads: Family<Vec<(String, String)>, Counter>,
    /// Audit records the Kafka sink did not accept (a warning: observe calls go on).
    pub audit_sink_failures: Counter,
    /// 1 while the last write to the Kafka audit sink succeeded.
    pub audit_sink_up: Gauge,
    /// Requests to `/mcp` refused before MCP, by reason (see [`Metrics::record_auth_refusal`]).
    auth_refusals: Family<Vec<(String, String)>, Counter>,
    /// Fetches of the identity provider's signing keys, by outcome.
    oidc_key_fetches: Family<Vec<(String, String)>, Counter>,
    /// The job path (`crate::jobs`).
    pub jobs: crate::jobs::JobMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_kafka");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "Tool calls by tool and outcome (ok or error code)",
            calls.clone(),
        );
        let duration = Family::<ToolLabel, Histogram>::new_with_constructor(|| {
            // 0.5 ms .. ~16 s
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "tool_call_duration_seconds",
            "Tool call latency",
            duration.clone(),
        );
        let inflight_requests = Gauge::default();
        registry.register(
            "inflight_requests",
            "MCP HTTP requests being served",
            inflight_requests.clone(),
        );
        let active_sessions = Gauge::default();
        registry.register(
            "active_sessions",
            "MCP sessions open (ended by DELETE or after 5 minutes idle)",
            active_sessions.clone(),
        );
        let kafka_up = Gauge::default();
        registry.register(
            "kafka_up",
            "Whether Kafka answered metadata recently",
            kafka_up.clone(),
        );
        let config_reloads = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "config_reloads",
            "Config file reloads by result (ok, invalid)",
            config_reloads.clone(),
        );
        let audit_sink_failures = Counter::default();
        registry.register(
            "audit_sink_failures",
            "Audit records the Kafka audit topic did not accept (stdout still has them)",
            audit_sink_failures.clone(),
        );
        let audit_sink_up = Gauge::default();
        registry.register(
            "audit_sink_up",
            "Whether the last write to the Kafka audit topic succeeded",
            audit_sink_up.clone(),
        );
        let auth_refusals = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "auth_refusals",
            "Requests to /mcp refused by authentication, by reason (missing, invalid, unverifiable: 401; too_many: 429, over the TokenReview limits)",
            auth_refusals.clone(),
        );
        let oidc_key_fetches = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "oidc_key_fetches",
            "Fetches of the identity provider's discovery document and signing keys (auth.oidc), by outcome (ok, failed)",
            oidc_key_fetches.clone(),
        );
        register_kafka_requests(&mut registry);
        let jobs = crate::jobs::JobMetrics::register(&mut registry);
        Self {
            registry,
            calls,
            duration,
            inflight_requests,
            active_sessions,
            kafka_up,
            config_reloads,
            audit_sink_failures,
            audit_sink_up,
            auth_refusals,
            oidc_key_fetches,
            jobs,
        }
    }

    pub fn record_call(&self, tool: &str, outcome: &str, took: Duration) {
        // Unknown tool names would make label cardinality caller-controlled.
        let tool = if tool.parse::<crate::tool_name::ToolName>().is_ok() {
            tool
        } else {
            "unknown"
        };
        self.calls
            .get_or_create(&CallLabels {
                tool: tool.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&ToolLabel {
                tool: tool.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one MCP HTTP request as being served until the returned
    /// guard is dropped.
    pub fn request_started(&self) -> InFlight {
        self.inflight_requests.inc();
        InFlight(self.inflight_requests.clone())
    }

    pub fn record_reload(&self, result: &str) {
        self.config_reloads
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc();
    }

    /// Counts one request to `/mcp` that authentication refused.
    pub fn record_auth_refusal(&self, reason: &str) {
        self.auth_refusals
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// Counts one fetch of the identity provider's keys (`ok` or `failed`).
    pub fn record_oidc_key_fetch(&self, outcome: &str) {
        self.oidc_key_fetches
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One request in `mcp_kafka_inflight_requests`. The count ends when this is
/// dropped, not after an await: a request whose client hangs up has its
/// future dropped mid-await, and would otherwise be counted for good.
#[must_use = "the request is counted only while this lives"]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflight(metrics: &Metrics) -> i64 {
        metrics.inflight_requests.get()
    }

    #[test]
    fn kafka_requests_are_counted_by_client_and_known_api_names_only() {
        let metrics = Metrics::new();
        count_kafka_requests("admin", "DescribeAcls", 2);
        count_kafka_requests("admin", "Unknown-62?", 1);
        let text = metrics.encode();
        assert!(text.contains("# HELP mcp_kafka_broker_requests Requests sent to Kafka"));
        assert!(
            text.contains(
                r#"mcp_kafka_broker_requests_total{client="admin",request="DescribeAcls"}"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"request="other""#), "{text}");
        assert!(!text.contains("Unknown-62"), "{text}");
    }

    #[tokio::test]
    async fn a_request_dropped_mid_await_is_no_longer_counted() {
        let metrics = Metrics::new();
        let serving = async {
            let _serving = metrics.request_started();
            std::future::pending::<()>().await;
        };
        let hung_up = tokio::time::timeout(Duration::from_millis(10), serving).await;
        assert!(hung_up.is_err(), "the request never finishes on its own");
        assert_eq!(inflight(&metrics), 0);

        let first = metrics.request_started();
        let second = metrics.request_started();
        assert_eq!(inflight(&metrics), 2);
        drop(first);
        assert_eq!(inflight(&metrics), 1);
        drop(second);
        assert!(metrics.encode().contains("mcp_kafka_inflight_requests 0"));
    }
}
