//! Cluster metadata: indexed by topic name, and cached for a short time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::metadata::{Metadata, MetadataTopic};

use super::{BlockingKafka, Kafka};
use crate::error::{ToolError, ToolResult};

impl Kafka {
    pub(super) fn metadata_within(
        &self,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<IndexedMetadata, KafkaError> {
        self.admin
            .inner()
            .fetch_metadata(topic, timeout)
            .map(IndexedMetadata::new)
    }

    /// Drops the cached metadata: called after every mutation, so that a
    /// tool's own change shows in the next answer.
    pub fn forget_metadata(&self) {
        self.metadata.forget();
    }
}

impl BlockingKafka<'_> {
    /// Cluster metadata for one topic or all, asked now.
    pub fn metadata(&self, topic: Option<&str>) -> ToolResult<IndexedMetadata> {
        self.kafka
            .metadata_within(topic, self.kafka.timeout)
            .map_err(|e| ToolError::from_kafka("fetching cluster metadata", &e))
    }

    /// The whole cluster's metadata, at most `kafka.metadataMaxAgeMs` old.
    /// Concurrent callers share one request to Kafka.
    pub fn cluster_metadata(&self) -> ToolResult<Arc<IndexedMetadata>> {
        self.kafka.metadata.get(|| self.metadata(None))
    }

    /// Whether metadata is cached at all (`kafka.metadataMaxAgeMs` > 0);
    /// without it, one topic's metadata is cheaper to ask for than all.
    pub fn caches_metadata(&self) -> bool {
        self.kafka.metadata.caches()
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
    pub(super) fn new(metadata: Metadata) -> Self {
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

/// The last whole-cluster metadata (`T`: `IndexedMetadata`; the tests use
/// plain values) and when it was asked for.
pub(super) struct MetadataCache<T> {
    max_age: Duration,
    last: Mutex<Option<(Instant, Arc<T>)>>,
    /// Held while asking Kafka, so that concurrent misses make one request.
    fetching: Mutex<()>,
    /// Bumped by `forget`: an answer to a request made before a mutation
    /// is not kept after it.
    generation: AtomicU64,
}

impl<T> MetadataCache<T> {
    pub(super) fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            last: Mutex::new(None),
            fetching: Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// Whether answers are kept at all (`max_age` > 0).
    pub(super) fn caches(&self) -> bool {
        !self.max_age.is_zero()
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < self.max_age)
            .map(|(_, md)| Arc::clone(md))
    }

    /// The cached metadata while fresh, else `fetch`'s answer (kept).
    pub(super) fn get(&self, fetch: impl FnOnce() -> ToolResult<T>) -> ToolResult<Arc<T>> {
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
    pub(super) fn refresh(&self, fetch: impl FnOnce() -> ToolResult<T>) -> ToolResult<Arc<T>> {
        let (asked, generation) = (Instant::now(), self.generation.load(Ordering::SeqCst));
        let md = Arc::new(fetch()?);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if !self.max_age.is_zero() && self.generation.load(Ordering::SeqCst) == generation {
            *last = Some((asked, Arc::clone(&md)));
        }
        Ok(md)
    }

    /// Drops what is cached: the next call asks Kafka.
    pub(super) fn forget(&self) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        *last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_asked_before_forget_is_not_kept_after_it() {
        let cache = MetadataCache::new(Duration::from_secs(60));
        let (asking, asked) = std::sync::mpsc::channel();
        let (answer, answered) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let asking_cache = &cache;
            let before = s.spawn(move || {
                asking_cache.get(|| {
                    asking.send(()).unwrap();
                    answered.recv().unwrap();
                    Ok(1)
                })
            });
            asked.recv().unwrap();
            cache.forget();
            answer.send(()).unwrap();
            assert_eq!(*before.join().unwrap().unwrap(), 1);
        });
        assert_eq!(
            *cache.get(|| Ok(2)).unwrap(),
            2,
            "the overtaken answer was read"
        );
        cache.forget();
        assert_eq!(*cache.refresh(|| Ok(3)).unwrap(), 3);
        assert_eq!(
            *cache.get(|| Ok(4)).unwrap(),
            3,
            "the probe's answer is kept"
        );
    }

    #[test]
    fn without_max_age_every_call_asks() {
        let cache = MetadataCache::new(Duration::ZERO);
        assert!(!cache.caches());
        assert_eq!(*cache.get(|| Ok(1)).unwrap(), 1);
        assert_eq!(*cache.get(|| Ok(2)).unwrap(), 2);
        cache.refresh(|| Ok(3)).unwrap();
        assert_eq!(*cache.get(|| Ok(4)).unwrap(), 4);
    }
}
