//! Kafka access: one long-lived admin client, producer and offset-lookup
//! consumer per process (librdkafka reconnects on its own), a few reusable
//! peek consumers, a health probe that `/readyz` and error classification
//! read, and a short-lived cache of the cluster metadata.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::AdminClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{ErrorCode, ToolError, ToolResult};

/// How often the health probe asks for metadata, and how old its last
/// success may be before the server counts Kafka as unreachable.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const HEALTHY_WITHIN: Duration = Duration::from_secs(6);

/// Peeks at once, and peek consumers kept connected between peeks: a
/// bound on their memory (threads, connections, up to 4 MiB prefetched
/// each) however many agents peek; more peeks wait for a consumer.
pub const PEEK_CONSUMERS: usize = 8;

/// The producer's context: logs librdkafka's global errors as the default
/// does, and remembers when the broker last refused our credentials (SASL)
/// or TLS handshake, so that a call that then fails says why instead of
/// "unreachable". On the producer because its client is polled for such
/// events (the admin client's main queue is not); it connects with the same
/// settings as every other client here.
/// Clones share what they saw: the producer holds one, `Kafka` another.
#[derive(Default, Clone)]
pub struct RefusalWatch {
    refused: Arc<std::sync::Mutex<Option<(Instant, &'static str)>>>,
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

pub type Admin = AdminClient<rdkafka::client::DefaultClientContext>;

pub struct Kafka {
    base: ClientConfig,
    pub admin: Admin,
    pub producer: FutureProducer<RefusalWatch>,
    /// Looks up offsets (ListOffsets for many partitions in one request);
    /// never assigned, subscribed or committed.
    lookup: BaseConsumer,
    /// Peek consumers between peeks: unassigned, never subscribed or committed.
    idle_peekers: Mutex<Vec<BaseConsumer>>,
    /// One permit per peek running (`PEEK_CONSUMERS`).
    pub peek_slots: tokio::sync::Semaphore,
    metadata: MetadataCache,
    refusals: RefusalWatch,
    /// Bound for one request to Kafka.
    pub timeout: Duration,
    started: Instant,
    /// Millis since `started` of the last successful probe (0 = never).
    last_ok_ms: AtomicU64,
    /// The cluster this server is fenced to (config), and the one the probe
    /// last found: while they differ, every tool call is refused.
    expected_cluster_id: Option<String>,
    observed_cluster_id: std::sync::RwLock<Option<String>>,
}

impl Kafka {
    /// Builds the clients. Credentials are read from their files here and
    /// only handed to librdkafka; they never reach logs or errors.
    pub fn connect(config: &KafkaConfig, client_id: &str) -> anyhow::Result<Arc<Kafka>> {
        let base = client_config(config, client_id)?;
        let refusals = RefusalWatch::default();
        let admin = base
            .create()
            .map_err(|e| anyhow::anyhow!("creating the Kafka admin client: {e}"))?;
        let producer = base
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", config.request_timeout_ms.to_string())
            .create_with_context(refusals.clone())
            .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
        let lookup = base
            .clone()
            .set("group.id", "mcp-kafka-sidecar-lookup")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| anyhow::anyhow!("creating the Kafka offset-lookup consumer: {e}"))?;
        Ok(Arc::new(Kafka {
            base,
            admin,
            producer,
            lookup,
            idle_peekers: Mutex::new(Vec::new()),
            peek_slots: tokio::sync::Semaphore::new(PEEK_CONSUMERS),
            metadata: MetadataCache::new(Duration::from_millis(config.metadata_max_age_ms)),
            refusals,
            timeout: Duration::from_millis(config.request_timeout_ms),
            started: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
            expected_cluster_id: config.expected_cluster_id.clone(),
            observed_cluster_id: std::sync::RwLock::new(None),
        }))
    }

    /// A new consumer that never joins or commits for `group` unless the
    /// caller commits explicitly (offset resets do).
    pub fn consumer(&self, group: &str) -> ToolResult<BaseConsumer> {
        self.consumer_config(group)
            .create()
            .map_err(|e| ToolError::from_kafka("creating a consumer", &e))
    }

    fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base.clone();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        config
    }

    /// A consumer for one peek (hold a `peek_slots` permit): assign it
    /// partitions and offsets, poll, and drop it; it is unassigned and kept
    /// for the next peek. Reuse skips a new consumer's connect and metadata
    /// round trips (most of a small peek's time). Never joins its group or
    /// commits.
    pub fn peek_consumer(&self) -> ToolResult<PeekConsumer<'_>> {
        let idle = self
            .idle_peekers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let consumer = match idle {
            Some(consumer) => consumer,
            None => self
                .consumer_config("mcp-kafka-sidecar-peek")
                // A peek reads little: don't prefetch librdkafka's default 64 MiB.
                .set("queued.max.messages.kbytes", "4096")
                // librdkafka decodes every record a fetch brings, shown or
                // not: at most 64 KiB per partition (a default peek's
                // max_bytes; the broker still sends a larger batch whole),
                // not 1 MiB. A 10-message peek of a topic holding 6 MiB in 6
                // partitions took the sidecar 13-15 ms of CPU, now 2.8 ms.
                .set("max.partition.fetch.bytes", "65536")
                // The next peek on this consumer waits for the fetch still in
                // flight from this one, which the broker holds this long when
                // there is nothing new (default 500 ms). Measured directly, a
                // 10-message peek on a reused consumer took 19 ms with 20 ms,
                // 0.6 ms with 1 ms. A peek reads only up to the end it looked
                // up or its fetch found, so it seldom waits for new data.
                .set("fetch.wait.max.ms", "1")
                // Fetch again only once what was fetched is read, and then at
                // once (librdkafka re-checks after this backoff, default 1 s).
                // A peek that the first answer serves (most: they stop at a
                // cap or at the end that answer shows) then costs the broker
                // one fetch, not a second held one: the broker's CPU per
                // 5-message peek under load fell from 0.54 ms to 0.36-0.41 ms.
                .set("queued.min.messages", "1")
                .set("fetch.queue.backoff.ms", "1")
                // Says when a fetch reaches a partition's end (the last stable
                // offset under read_committed), which a peek needs where
                // transaction markers end a partition.
                .set("enable.partition.eof", "true")
                // A start that retention has deleted (a peek from earliest
                // starts at the log start this consumer last saw) reads from
                // the new log start, not from the end (librdkafka's default).
                .set("auto.offset.reset", "earliest")
                .create()
                .map_err(|e| ToolError::from_kafka("creating a consumer", &e))?,
        };
        Ok(PeekConsumer {
            consumer: Some(consumer),
            idle: &self.idle_peekers,
        })
    }

    /// Runs blocking librdkafka work off the async runtime.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> ToolResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Kafka) -> ToolResult<T> + Send + 'static,
    {
        let this = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| {
                ToolError::new(ErrorCode::Internal, format!("a Kafka task failed: {e}"))
            })?;
        // A timeout while the probe also cannot reach Kafka is an outage, not
        // a slow request: say so, so that agents back off instead of retrying.
        result.map_err(|e| self.classify(e))
    }

    /// Cluster metadata for one topic or all.
    pub fn metadata(&self, topic: Option<&str>) -> ToolResult<IndexedMetadata> {
        self.metadata_within(topic, self.timeout)
            .map_err(|e| ToolError::from_kafka("fetching cluster metadata", &e))
    }

    fn metadata_within(
        &self,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<IndexedMetadata, KafkaError> {
        self.admin
            .inner()
            .fetch_metadata(topic, timeout)
            .map(IndexedMetadata::new)
    }

    /// The whole cluster's metadata, at most `kafka.metadataMaxAgeMs` old.
    /// Concurrent callers share one request to Kafka.
    pub fn cluster_metadata(&self) -> ToolResult<Arc<IndexedMetadata>> {
        self.metadata.get(|| self.metadata(None))
    }

    /// Whether metadata is cached at all (`kafka.metadataMaxAgeMs` > 0);
    /// without it, one topic's metadata is cheaper to ask for than all.
    pub fn caches_metadata(&self) -> bool {
        !self.metadata.max_age.is_zero()
    }

    /// Drops the cached metadata: called after every mutation, so that a
    /// tool's own change shows in the next answer.
    pub fn forget_metadata(&self) {
        self.metadata.forget();
    }

    /// Earliest and latest offsets of some partitions of a topic: two
    /// ListOffsets requests per leader (Kafka's -2 = earliest, -1 = latest),
    /// where per-partition watermark queries would make two per partition.
    /// One after the other on purpose: the broker answers one request per
    /// connection at a time, so a second thread only added its start-up and
    /// wake-ups (fetch_offsets' p50 fell by a quarter or more without it).
    pub fn watermarks_of(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> ToolResult<BTreeMap<i32, (i64, i64)>> {
        let earliest = self.offsets_at(topic, partitions, Offset::Beginning)?;
        let latest = self.offsets_at(topic, partitions, Offset::End)?;
        Ok(partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    (
                        earliest.get(p).copied().unwrap_or(0),
                        latest.get(p).copied().unwrap_or(0),
                    ),
                )
            })
            .collect())
    }

    /// Offsets of partitions at a point: `Offset::Beginning`, `Offset::End`,
    /// or `Offset::Offset(timestamp_ms)` (the first offset at or after it;
    /// -1 when there is none). One request per partition leader.
    pub fn offsets_at(
        &self,
        topic: &str,
        partitions: &[i32],
        at: Offset,
    ) -> ToolResult<BTreeMap<i32, i64>> {
        self.offsets_via(&self.lookup, topic, partitions, at)
    }

    /// `offsets_at`, asked on `client`'s own connection (a peek asks on its
    /// consumer's, so that concurrent peeks do not queue behind each other
    /// on the shared lookup connection).
    pub fn offsets_via(
        &self,
        client: &BaseConsumer,
        topic: &str,
        partitions: &[i32],
        at: Offset,
    ) -> ToolResult<BTreeMap<i32, i64>> {
        let what = || format!("fetching offsets of {topic:?}");
        let mut query = TopicPartitionList::new();
        for p in partitions {
            query
                .add_partition_offset(topic, *p, at)
                .map_err(|e| ToolError::from_kafka(&what(), &e))?;
        }
        // librdkafka finds leaders in its own metadata, which may predate a
        // partition or leader change, and a broker answers "not leader" for
        // a partition whose leadership it has not taken up yet (just after
        // create_partitions): refresh the metadata and ask again, backing
        // off, at most 4 times (0.3 s in all) and within the request timeout.
        let stale = |code: Option<RDKafkaErrorCode>| {
            use RDKafkaErrorCode::*;
            matches!(
                code,
                Some(
                    UnknownPartition
                        | UnknownTopic
                        | UnknownTopicOrPartition
                        | LeaderNotAvailable
                        | NotLeaderForPartition
                )
            )
        };
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(20);
        let mut retries = 4;
        let found = loop {
            let found = client.offsets_for_times(query.clone(), self.timeout);
            let again = match &found {
                Err(e) => stale(e.rdkafka_error_code()),
                Ok(list) => list
                    .elements()
                    .iter()
                    .any(|e| stale(e.error().err().and_then(|err| err.rdkafka_error_code()))),
            };
            if !again || retries == 0 || Instant::now() + pause >= deadline {
                break found.map_err(|e| ToolError::from_kafka(&what(), &e))?;
            }
            retries -= 1;
            std::thread::sleep(pause);
            pause *= 2;
            client
                .fetch_metadata(Some(topic), self.timeout)
                .map_err(|e| ToolError::from_kafka(&what(), &e))?;
        };
        found
            .elements()
            .iter()
            .map(|e| {
                e.error().map_err(|err| {
                    ToolError::from_kafka(
                        &format!("fetching offsets of {topic:?}/{}", e.partition()),
                        &err,
                    )
                })?;
                Ok((e.partition(), e.offset().to_raw().unwrap_or(-1)))
            })
            .collect()
    }

    /// A timeout or transport failure while the probe cannot reach Kafka
    /// either is an outage, or, when the broker refused our credentials or
    /// TLS handshake, a configuration problem that retrying does not fix.
    pub fn classify(&self, err: ToolError) -> ToolError {
        if !matches!(err.code, ErrorCode::Timeout | ErrorCode::KafkaUnavailable)
            || self.is_healthy()
        {
            return err;
        }
        match self.refusals.refusal(self.last_ok()) {
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

    /// When the probe last succeeded.
    fn last_ok(&self) -> Option<Instant> {
        match self.last_ok_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.started + Duration::from_millis(ms)),
        }
    }

    /// Whether metadata was fetched recently.
    pub fn is_healthy(&self) -> bool {
        self.last_ok()
            .is_some_and(|at| at.elapsed() < HEALTHY_WITHIN)
    }

    /// Asks the cluster for its ID. rust-rdkafka's `fetch_cluster_id` copies
    /// librdkafka's string and never frees it (about 40 bytes lost a call:
    /// the sidecar's RSS grew 2.5 MiB in 60,000 cluster_status calls);
    /// this frees it with `rd_kafka_mem_free`, as librdkafka asks. Blocking.
    pub fn fetch_cluster_id(&self, timeout: Duration) -> Option<String> {
        let rk = self.admin.inner().native_ptr();
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `rk` lives as long as `self.admin`; the returned string is
        // librdkafka's own allocation, read once and freed exactly once.
        unsafe {
            let id = rdkafka_sys::rd_kafka_clusterid(rk, timeout_ms);
            if id.is_null() {
                return None;
            }
            let text = std::ffi::CStr::from_ptr(id)
                .to_str()
                .ok()
                .map(str::to_string);
            rdkafka_sys::rd_kafka_mem_free(rk, id.cast());
            text
        }
    }

    /// The connected cluster's ID as the probe last read it (read only when
    /// a fence is configured).
    pub fn cluster_id(&self) -> Option<String> {
        self.observed_cluster_id.read().ok().and_then(|o| o.clone())
    }

    /// The cluster-ID fence: Ok while the connected cluster is the one this
    /// server is fenced to (or no fence is configured).
    pub fn fence(&self) -> ToolResult<()> {
        let Some(expected) = &self.expected_cluster_id else {
            return Ok(());
        };
        let observed = self
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
    pub fn probe(&self) -> bool {
        let timeout = PROBE_INTERVAL.min(self.timeout);
        // Serves the lookup consumer's events (errors, logs), which would
        // otherwise queue up: it is never polled for messages.
        let _ = self.lookup.poll(Duration::ZERO);
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
        if self.expected_cluster_id.is_some() {
            let Some(id) = self.fetch_cluster_id(timeout) else {
                return false;
            };
            if let Ok(mut observed) = self.observed_cluster_id.write() {
                *observed = Some(id);
            }
        }
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        self.last_ok_ms.store(now, Ordering::Relaxed);
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

/// A peek consumer on loan; back to the idle ones when dropped.
pub struct PeekConsumer<'a> {
    consumer: Option<BaseConsumer>,
    idle: &'a Mutex<Vec<BaseConsumer>>,
}

impl std::ops::Deref for PeekConsumer<'_> {
    type Target = BaseConsumer;

    fn deref(&self) -> &BaseConsumer {
        self.consumer.as_ref().expect("present until dropped")
    }
}

impl PeekConsumer<'_> {
    /// The partition's high watermark as the last fetch response said it
    /// (librdkafka stores it before it hands out that response's
    /// messages); no request. rust-rdkafka does not wrap this call.
    pub fn fetched_high_watermark(&self, topic: &std::ffi::CStr, partition: i32) -> Option<i64> {
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client lives as long as `self`; `topic` is a valid C
        // string for the call; librdkafka writes the two offsets and keeps no pointer.
        let err = unsafe {
            rdkafka_sys::rd_kafka_get_watermark_offsets(
                self.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }
}

impl Drop for PeekConsumer<'_> {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        // Unassigning drops what it prefetched; one that cannot be unassigned is not reused.
        if consumer.unassign().is_err() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < PEEK_CONSUMERS {
            idle.push(consumer);
        }
    }
}

/// Metadata with its topics indexed by name: a tool naming one topic of
/// thousands finds it with one hash lookup instead of decoding every name
/// (with 600 topics the scan was a tenth of a peek's instructions in the
/// sidecar, in callgrind).
pub struct IndexedMetadata {
    metadata: Metadata,
    topic_at: HashMap<String, usize>,
}

impl IndexedMetadata {
    fn new(metadata: Metadata) -> Self {
        let topic_at = metadata
            .topics()
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name().to_string(), i))
            .collect();
        Self { metadata, topic_at }
    }

    /// The topic's entry, if the answer has one (it may carry an error).
    pub fn topic(&self, name: &str) -> Option<&MetadataTopic> {
        self.topic_at.get(name).map(|&i| &self.metadata.topics()[i])
    }
}

impl std::ops::Deref for IndexedMetadata {
    type Target = Metadata;

    fn deref(&self) -> &Metadata {
        &self.metadata
    }
}

/// The last whole-cluster metadata and when it was asked for.
struct MetadataCache {
    max_age: Duration,
    last: Mutex<Option<(Instant, Arc<IndexedMetadata>)>>,
    /// Held while asking Kafka, so that concurrent misses make one request.
    fetching: Mutex<()>,
    /// Bumped by `forget`: an answer to a request made before a mutation
    /// is not kept after it.
    generation: AtomicU64,
}

impl MetadataCache {
    fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            last: Mutex::new(None),
            fetching: Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    fn fresh(&self) -> Option<Arc<IndexedMetadata>> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < self.max_age)
            .map(|(_, md)| Arc::clone(md))
    }

    /// The cached metadata while fresh, else `fetch`'s answer (kept).
    fn get(
        &self,
        fetch: impl FnOnce() -> ToolResult<IndexedMetadata>,
    ) -> ToolResult<Arc<IndexedMetadata>> {
        if self.max_age.is_zero() {
            return fetch().map(Arc::new);
        }
        if let Some(md) = self.fresh() {
            return Ok(md);
        }
        let _one_at_a_time = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        // Another caller may have fetched while this one waited.
        if let Some(md) = self.fresh() {
            return Ok(md);
        }
        self.refresh(fetch)
    }

    /// Asks Kafka now and keeps the answer, timed from when it was asked.
    fn refresh(
        &self,
        fetch: impl FnOnce() -> ToolResult<IndexedMetadata>,
    ) -> ToolResult<Arc<IndexedMetadata>> {
        let (asked, generation) = (Instant::now(), self.generation.load(Ordering::SeqCst));
        let md = Arc::new(fetch()?);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if !self.max_age.is_zero() && self.generation.load(Ordering::SeqCst) == generation {
            *last = Some((asked, Arc::clone(&md)));
        }
        Ok(md)
    }

    fn forget(&self) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        *last = None;
    }
}

fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the {what} file {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// librdkafka settings for the configured cluster.
fn client_config(config: &KafkaConfig, client_id: &str) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.bootstrap_servers.join(","))
        .set("client.id", client_id)
        // A lookup of a missing topic must never create it, whatever the
        // broker's auto.create.topics.enable says (librdkafka's producer-side
        // default is true, and the admin client is a producer handle).
        .set("allow.auto.create.topics", "false")
        .set("socket.timeout.ms", config.request_timeout_ms.to_string())
        // Reconnect quickly after an outage, without hammering the broker.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log_level", "4");
    let protocol = match (config.tls.is_some(), config.sasl.is_some()) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = &config.tls {
        let files = [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ];
        for (key, file) in files {
            if let Some(path) = file {
                c.set(key, path.display().to_string());
            }
        }
    }
    if let Some(sasl) = &config.sasl {
        c.set("sasl.mechanism", sasl.mechanism.as_str())
            .set(
                "sasl.username",
                read_secret_file(&sasl.username_file, "SASL username")?,
            )
            .set(
                "sasl.password",
                read_secret_file(&sasl.password_file, "SASL password")?,
            );
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SaslConfig, SaslMechanism, TlsFiles};

    fn kafka_config() -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: vec!["kafka-0:9093".into(), "kafka-1:9093".into()],
            expected_cluster_id: None,
            tls: None,
            sasl: None,
            request_timeout_ms: 5_000,
            metadata_max_age_ms: 1_000,
        }
    }

    #[test]
    fn plaintext_by_default_and_never_auto_creates_topics() {
        let c = client_config(&kafka_config(), "id").unwrap();
        assert_eq!(c.get("security.protocol"), Some("PLAINTEXT"));
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("kafka-0:9093,kafka-1:9093")
        );
        assert_eq!(c.get("allow.auto.create.topics"), Some("false"));
    }

    #[test]
    fn tls_and_scram_come_from_files() {
        let dir = std::env::temp_dir().join(format!("mcpk-kafka-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("username"), "agent\n").unwrap();
        std::fs::write(dir.join("password"), "canary-s3cret\n").unwrap();
        let mut config = kafka_config();
        config.tls = Some(TlsFiles {
            ca_file: Some(dir.join("ca.crt")),
            cert_file: None,
            key_file: None,
        });
        config.sasl = Some(SaslConfig {
            mechanism: SaslMechanism::ScramSha512,
            username_file: dir.join("username"),
            password_file: dir.join("password"),
        });
        let c = client_config(&config, "id").unwrap();
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("agent"));
        assert_eq!(
            c.get("sasl.password"),
            Some("canary-s3cret"),
            "trailing newline of the mounted file dropped"
        );
        assert_eq!(
            c.get("ssl.ca.location"),
            Some(dir.join("ca.crt").to_str().unwrap())
        );

        // A missing credential file is an error that names the file, not a secret.
        std::fs::remove_file(dir.join("password")).unwrap();
        let err = client_config(&config, "id").unwrap_err().to_string();
        assert!(
            err.contains("SASL password file") && err.contains("password"),
            "{err}"
        );
        assert!(!err.contains("canary-s3cret"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
