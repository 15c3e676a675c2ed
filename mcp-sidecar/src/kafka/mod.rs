//! Kafka access: one long-lived admin client, producer and offset-lookup
//! consumer per process (librdkafka reconnects on its own), a few reusable
//! peek consumers, a health probe that `/readyz` and error classification
//! read, and a short-lived cache of the cluster metadata.
//!
//! Tools reach Kafka only through `Kafka`'s methods, and every one answers
//! with the tool surface's errors, already classified (`Kafka::classify`:
//! a timeout while the probe cannot reach Kafka either is an outage): the
//! async requests directly ([`Kafka::admin`], [`Kafka::produce`]), the
//! blocking ones inside [`Kafka::blocking`], whose [`BlockingKafka`] exists
//! only there.
//!
//! - `settings`: the librdkafka settings of every client;
//! - `metadata`: cluster metadata, indexed and cached;
//! - `offsets`: offset lookups (ListOffsets);
//! - `peek`: the pool of peek consumers;
//! - `requests`: admin requests, produce, group offsets;
//! - `consumer_groups`: groups of both protocols (ListConsumerGroups,
//!   DescribeConsumerGroups), which rust-rdkafka does not wrap;
//! - `acls`: Kafka's ACLs (DescribeAcls), which rust-rdkafka does not wrap;
//! - `health`: the probe, refusals, classification and the cluster-ID fence;
//! - `statistics`: requests sent, by client and API, from librdkafka's statistics;
//! - `ffi`: the librdkafka calls rust-rdkafka does not wrap (or leaks in).

mod acls;
pub(crate) mod admin_request;
mod consumer_groups;
mod ffi;
pub use ffi::flush_blocking;
mod health;
mod metadata;
mod offsets;
mod peek;
mod requests;
mod settings;
mod statistics;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;

use crate::config::KafkaConfig;
use crate::error::{ErrorCode, ToolError, ToolResult};

pub use acls::{
    AclAnswer, AclBinding, AclFilter, AclOperation, AclPatternType, AclPermission, AclResource,
    AclResourceType,
};
pub use consumer_groups::{GroupDetail, GroupListing, GroupType, MemberDetail};
pub use health::RefusalWatch;
pub use metadata::IndexedMetadata;
pub use peek::{PEEK_CONSUMERS, PeekConsumer, PeekSlot};
pub use requests::PerResource;
pub use statistics::{ClientRole, Counted, RequestsSent, RoleCounts};

pub type Admin = AdminClient<Counted>;

/// The context of a consumer that asks to be told of partition ends
/// (`enable.partition.eof`: the peeks, the job journal's reader): logs
/// librdkafka's errors as rust-rdkafka's default context does, except a
/// partition's end. rust-rdkafka hands every error event to the context
/// before `poll` returns it, so each partition read to its end was an
/// ERROR line in the log ("Global error: PartitionEOF").
#[derive(Clone, Copy, Default)]
pub struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // rust-rdkafka hands a partition's end over as `Global(PartitionEOF)`.
        if error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            rdkafka::ClientContext::error(&rdkafka::client::DefaultClientContext, error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// A peek consumer.
pub type PeekingConsumer = BaseConsumer<QuietEof>;

pub struct Kafka {
    admin: Admin,
    producer: FutureProducer<Counted<RefusalWatch>>,
    /// Looks up offsets (ListOffsets for many partitions in one request);
    /// never assigned, subscribed or committed.
    lookup: BaseConsumer<Counted>,
    /// What every client connects with (new group consumers start from it).
    base: rdkafka::ClientConfig,
    peeks: peek::PeekPool,
    metadata: metadata::MetadataCache<IndexedMetadata>,
    health: health::Health,
    /// What the clients above sent, from their statistics.
    sent: Arc<statistics::Tally>,
    /// Bound for one request to Kafka.
    timeout: Duration,
    /// This server's principal as Kafka sees it, where that is known.
    principal: Option<String>,
}

/// Kafka as a blocking task sees it: the librdkafka calls that block a
/// thread, available only inside [`Kafka::blocking`], which runs them off
/// the async runtime and classifies what they return.
pub struct BlockingKafka<'a> {
    kafka: &'a Kafka,
}

impl Kafka {
    /// Builds the clients. Credentials are read from their files here and
    /// only handed to librdkafka; they never reach logs or errors.
    pub fn connect(config: &KafkaConfig, client_id: &str) -> anyhow::Result<Arc<Kafka>> {
        Self::connect_with(config, client_id, settings::STATISTICS_INTERVAL)
    }

    /// `connect`, with the clients' statistics (what [`Kafka::requests_sent`]
    /// reads) emitted every `statistics_interval`: tests wait for them.
    pub fn connect_with(
        config: &KafkaConfig,
        client_id: &str,
        statistics_interval: Duration,
    ) -> anyhow::Result<Arc<Kafka>> {
        let base = settings::client_config(config, client_id)?;
        let refusals = RefusalWatch::default();
        let sent = Arc::new(statistics::Tally::default());
        let counted = |role| Counted::new(role, &sent);
        let admin = settings::admin_config(&base, statistics_interval)
            .create_with_context(counted(ClientRole::Admin))
            .map_err(|e| anyhow::anyhow!("creating the Kafka admin client: {e}"))?;
        let producer =
            settings::producer_config(&base, config.request_timeout_ms, statistics_interval)
                .create_with_context(Counted::wrapping(
                    refusals.clone(),
                    ClientRole::Producer,
                    &sent,
                ))
                .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
        let lookup = settings::lookup_config(&base, statistics_interval)
            .create_with_context(counted(ClientRole::Lookup))
            .map_err(|e| anyhow::anyhow!("creating the Kafka offset-lookup consumer: {e}"))?;
        Ok(Arc::new(Kafka {
            admin,
            producer,
            lookup,
            peeks: peek::PeekPool::new(settings::peek_consumer_config(&base)),
            sent,
            base,
            metadata: metadata::MetadataCache::new(Duration::from_millis(
                config.metadata_max_age_ms,
            )),
            health: health::Health::new(refusals, config.expected_cluster_id.clone()),
            timeout: Duration::from_millis(config.request_timeout_ms),
            principal: settings::principal(config)?,
        }))
    }

    /// The settings every client of this process connects with, for the
    /// clients made elsewhere (the job worker's). They hold the credentials:
    /// never log them.
    pub fn base_config(&self) -> rdkafka::ClientConfig {
        self.base.clone()
    }

    /// Bound for one request to Kafka (`kafka.requestTimeoutMs`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// This server's Kafka principal, where it is known: with SASL,
    /// `User:<username>` (see `settings::principal`).
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Runs blocking librdkafka work off the async runtime.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> ToolResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&BlockingKafka<'_>) -> ToolResult<T> + Send + 'static,
    {
        let this = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || f(&BlockingKafka { kafka: &this }))
            .await
            .map_err(|e| {
                ToolError::new(ErrorCode::Internal, format!("a Kafka task failed: {e}"))
            })?;
        // A timeout while the probe also cannot reach Kafka is an outage, not
        // a slow request: say so, so that agents back off instead of retrying.
        result.map_err(|e| self.classify(e))
    }
}

impl BlockingKafka<'_> {
    /// Bound for one request to Kafka.
    pub fn timeout(&self) -> Duration {
        self.kafka.timeout
    }
}
