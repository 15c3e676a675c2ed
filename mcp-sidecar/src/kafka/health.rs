//! Whether Kafka answers: a probe that `/readyz` and error classification
//! read, the broker's refusals of our credentials, and the cluster-ID
//! fence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::Kafka;
use crate::error::{ErrorCode, ToolError, ToolResult};

/// How often the health probe asks for metadata, and how old its last
/// success may be before the server counts Kafka as unreachable.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const HEALTHY_WITHIN: Duration = Duration::from_secs(6);

/// The producer's context: logs librdkafka's global errors as the default
/// does, and remembers when the broker last refused our credentials (SASL)
/// or TLS handshake, so that a call that then fails says why instead of
/// "unreachable". On the producer because its client is polled for such
/// events all the time (the admin client's only once per probe); it
/// connects with the same settings as every other client here.
/// Clones share what they saw: the producer holds one, `Kafka` another.
#[derive(Default, Clone)]
pub struct RefusalWatch {
    refused: Arc<Mutex<Option<(Instant, &'static str)>>>,
}

impl ClientContext for RefusalWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
        const TLS: &str =
            "the TLS handshake with Kafka failed; check the CA and the client certificate";
        let why = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => {
                "Kafka refused this server's SASL credentials; check the username and password Secret"
            }
            Some(RDKafkaErrorCode::SSL) => TLS,
            // Under TLS 1.3 a broker that wants a client certificate says so
            // with an alert after the handshake: a transport failure whose
            // reason is OpenSSL's.
            Some(RDKafkaErrorCode::BrokerTransportFailure) if reason.contains("SSL routines") => {
                TLS
            }
            _ => return,
        };
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some((Instant::now(), why));
        }
    }
}

impl RefusalWatch {
    /// Why the broker refused this client, if it did since the last success.
    fn refusal(&self, healthy_since: Option<Instant>) -> Option<&'static str> {
        let (at, why) = (*self.refused.lock().ok()?)?;
        healthy_since.is_none_or(|ok| at > ok).then_some(why)
    }
}

/// What the probe found.
pub(super) struct Health {
    started: Instant,
    /// Millis since `started` of the last successful probe (0 = never).
    last_ok_ms: AtomicU64,
    refusals: RefusalWatch,
    /// The cluster this server is fenced to (config), and the one the probe
    /// last found: while they differ, every tool call is refused.
    expected_cluster_id: Option<String>,
    observed_cluster_id: RwLock<Option<String>>,
}

impl Health {
    pub(super) fn new(refusals: RefusalWatch, expected_cluster_id: Option<String>) -> Self {
        Self {
            started: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
            refusals,
            expected_cluster_id,
            observed_cluster_id: RwLock::new(None),
        }
    }

    /// When the probe last succeeded.
    fn last_ok(&self) -> Option<Instant> {
        match self.last_ok_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.started + Duration::from_millis(ms)),
        }
    }

    fn record_ok(&self) {
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        self.last_ok_ms.store(now, Ordering::Relaxed);
    }
}

impl Kafka {
    /// A timeout or transport failure while the probe cannot reach Kafka
    /// either is an outage, or, when the broker refused our credentials or
    /// TLS handshake, a configuration problem that retrying does not fix.
    pub fn classify(&self, err: ToolError) -> ToolError {
        if !matches!(err.code, ErrorCode::Timeout | ErrorCode::KafkaUnavailable)
            || self.is_healthy()
        {
            return err;
        }
        match self.health.refusals.refusal(self.health.last_ok()) {
            Some(why) => ToolError::new(
                ErrorCode::PermissionDenied,
                format!("{why} ({})", err.message),
            ),
            None if err.code == ErrorCode::Timeout => ToolError::new(
                ErrorCode::KafkaUnavailable,
                format!("Kafka is unreachable ({})", err.message),
            ),
            None => err,
        }
    }

    /// Whether metadata was fetched recently.
    pub fn is_healthy(&self) -> bool {
        self.health
            .last_ok()
            .is_some_and(|at| at.elapsed() < HEALTHY_WITHIN)
    }

    /// The connected cluster's ID as the probe last read it (read only when
    /// a fence is configured).
    pub fn cluster_id(&self) -> Option<String> {
        self.health
            .observed_cluster_id
            .read()
            .ok()
            .and_then(|o| o.clone())
    }

    /// The cluster-ID fence: Ok while the connected cluster is the one this
    /// server is fenced to (or no fence is configured).
    pub fn fence(&self) -> ToolResult<()> {
        let Some(expected) = &self.health.expected_cluster_id else {
            return Ok(());
        };
        let observed = self
            .health
            .observed_cluster_id
            .read()
            .map(|o| o.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        match observed {
            Some(id) if &id == expected => Ok(()),
            Some(id) => Err(ToolError::new(
                ErrorCode::Fenced,
                format!(
                    "connected to Kafka cluster {id:?}, but this server is fenced to cluster {expected:?}: every call is refused"
                ),
            )),
            None => Err(ToolError::new(
                ErrorCode::Fenced,
                "the connected Kafka cluster's ID is not known yet; calls wait for the fence check",
            )),
        }
    }

    /// One probe: a metadata answer, and the cluster's ID when a fence needs
    /// it (so a reconnect to another cluster is seen within one probe). Blocking.
    fn probe(&self) -> bool {
        let timeout = PROBE_INTERVAL.min(self.timeout);
        // Serves the events (statistics, errors, logs) of the clients that
        // are never polled for messages, which would otherwise queue up.
        self.serve_events();
        if self
            .metadata
            .refresh(|| {
                self.metadata_within(None, timeout)
                    .map_err(|e| ToolError::from_kafka("probe", &e))
            })
            .is_err()
        {
            return false;
        }
        if self.health.expected_cluster_id.is_some() {
            let Some(id) = super::ffi::cluster_id(self.admin.inner().native_client(), timeout)
            else {
                return false;
            };
            if let Ok(mut observed) = self.health.observed_cluster_id.write() {
                *observed = Some(id);
            }
        }
        self.health.record_ok();
        true
    }

    /// Probes while this client is in use (a config reload that replaces it
    /// ends its probe); `/readyz` reads the result.
    pub fn spawn_probe(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(probe) = this.upgrade() else { return };
                let ok = tokio::task::spawn_blocking(move || probe.probe())
                    .await
                    .unwrap_or(false);
                tracing::debug!(ok, "kafka probe");
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        })
    }
}
