//! The operator's Prometheus metrics (prometheus-client, text format).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// `ok` or an error category.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: String,
    verb: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabel, Counter>,
    duration: Histogram,
    writes: Family<WriteLabels, Counter>,
    /// 1 while this replica holds the leader Lease (or runs without election).
    pub leader: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_kafka_operator");
        let reconciles = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of McpKafkaServers by outcome (ok or error category)",
            reconciles.clone(),
        );
        // 1 ms .. ~32 s
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes to the Kubernetes API by kind and verb",
            writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this replica is the leader",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            duration,
            writes,
            leader,
        }
    }

    pub fn reconciled(&self, outcome: &str, took: Duration) {
        self.reconciles
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn api_write(&self, kind: &str, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                verb: verb.to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
