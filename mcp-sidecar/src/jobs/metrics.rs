//! The job path's metrics, in the sidecar's registry (`crate::metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// `ok` or the error code.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

pub struct JobMetrics {
    /// Request records read (redeliveries included).
    pub received: Counter,
    answered: Family<OutcomeLabel, Counter>,
    pub dead_lettered: Counter,
    pub in_flight: Gauge,
    lag: Family<PartitionLabel, Gauge>,
}

impl JobMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            received: Counter::default(),
            answered: Family::default(),
            dead_lettered: Counter::default(),
            in_flight: Gauge::default(),
            lag: Family::default(),
        };
        registry.register(
            "jobs_received",
            "Job records read from the request topic (redeliveries included)",
            metrics.received.clone(),
        );
        registry.register(
            "jobs_answered",
            "Jobs answered on a reply topic, by outcome (ok, or the error code)",
            metrics.answered.clone(),
        );
        registry.register(
            "jobs_dead_lettered",
            "Job records without a usable jobId, written to the dead-letter topic",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "jobs_in_flight",
            "Jobs this sidecar runs now (at most jobs.maxInFlight)",
            metrics.in_flight.clone(),
        );
        registry.register(
            "jobs_lag",
            "Records of each assigned request partition not yet answered, as this sidecar sees it (every 5 s, and on assignment)",
            metrics.lag.clone(),
        );
        metrics
    }

    /// Counts one answer; `outcome` is `ok` or a code (anything else: `INTERNAL`,
    /// so that the label set stays bounded whatever a stored reply says).
    pub fn answered(&self, outcome: &str) {
        let outcome = if outcome == "ok" {
            "ok"
        } else {
            ErrorCode::ALL
                .iter()
                .map(|c| c.as_str())
                .find(|c| *c == outcome)
                .unwrap_or(ErrorCode::Internal.as_str())
        };
        self.answered.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn set_lag(&self, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&PartitionLabel { partition })
            .set(lag);
    }

    /// A partition given up is no longer this sidecar's lag.
    pub fn forget_partition(&self, partition: i32) {
        self.lag.remove(&PartitionLabel { partition });
    }
}
