//! Cluster metadata: indexed by topic name, and cached for a short time
//! with one request to Kafka however many callers miss at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// One answer from Kafka and when it was asked for.
struct Answer<T> {
    asked: Instant,
    value: Arc<T>,
}

impl<T> Clone for Answer<T> {
    fn clone(&self) -> Self {
        Self {
            asked: self.asked,
            value: Arc::clone(&self.value),
        }
    }
}

/// An answer is kept until `max_age` after it was asked for (not after it
/// came back), so that what a caller reads is never older than that.
struct SinceAsked(Duration);

impl<T> moka::Expiry<u64, Answer<T>> for SinceAsked {
    fn expire_after_create(
        &self,
        _generation: &u64,
        answer: &Answer<T>,
        created: Instant,
    ) -> Option<Duration> {
        Some(
            self.0
                .saturating_sub(created.saturating_duration_since(answer.asked)),
        )
    }

    fn expire_after_update(
        &self,
        _generation: &u64,
        answer: &Answer<T>,
        updated: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(
            self.0
                .saturating_sub(updated.saturating_duration_since(answer.asked)),
        )
    }
}

/// The last whole-cluster metadata (`T`: `IndexedMetadata`; the tests use
/// plain values), at most `max_age` old.
///
/// Concurrent misses share one request and its outcome, a failure
/// included (moka's `try_get_with`). A lock held while asking made them
/// take turns instead: with Kafka down, each waited for the failures of
/// those before it (four concurrent `list_topics` answered after 10, 20,
/// 30 and 40 s with a 10 s request timeout). A failure is not kept: the
/// next call after it asks again.
pub(super) struct MetadataCache<T> {
    max_age: Duration,
    /// Answers keyed by the generation they were asked in; `None` when
    /// nothing is cached (`max_age` is zero).
    answers: Option<moka::sync::Cache<u64, Answer<T>>>,
    /// Bumped by `forget`: an answer to a request made before a mutation
    /// is kept under the old generation, which no later call reads.
    generation: AtomicU64,
}

impl<T: Send + Sync + 'static> MetadataCache<T> {
    pub(super) fn new(max_age: Duration) -> Self {
        let answers = (!max_age.is_zero()).then(|| {
            moka::sync::Cache::builder()
                // The current generation, and answers to requests that a
                // mutation overtook (never read again; they expire).
                .max_capacity(4)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(SinceAsked(max_age))
                .build()
        });
        Self {
            max_age,
            answers,
            generation: AtomicU64::new(0),
        }
    }

    /// Whether answers are kept at all (`max_age` > 0).
    pub(super) fn caches(&self) -> bool {
        !self.max_age.is_zero()
    }

    /// The cached answer while fresh, else `fetch`'s answer (kept), asked
    /// once for every caller that misses meanwhile.
    pub(super) fn get(&self, fetch: impl FnOnce() -> ToolResult<T>) -> ToolResult<Arc<T>> {
        let Some(answers) = &self.answers else {
            return fetch().map(Arc::new);
        };
        let generation = self.generation.load(Ordering::SeqCst);
        answers
            .try_get_with(generation, || {
                let asked = Instant::now();
                fetch().map(|value| Answer {
                    asked,
                    value: Arc::new(value),
                })
            })
            .map(|answer| answer.value)
            .map_err(Arc::unwrap_or_clone)
    }

    /// Asks Kafka now and keeps the answer, timed from when it was asked.
    pub(super) fn refresh(&self, fetch: impl FnOnce() -> ToolResult<T>) -> ToolResult<Arc<T>> {
        let (asked, generation) = (Instant::now(), self.generation.load(Ordering::SeqCst));
        let value = Arc::new(fetch()?);
        if let Some(answers) = &self.answers {
            let answer = Answer {
                asked,
                value: Arc::clone(&value),
            };
            answers.insert(generation, answer);
        }
        Ok(value)
    }

    /// Drops what is cached: the next call asks Kafka.
    pub(super) fn forget(&self) {
        let old = self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(answers) = &self.answers {
            answers.invalidate(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::error::ErrorCode;

    const CALLERS: usize = 5;
    const SLOW: Duration = Duration::from_secs(1);

    /// `CALLERS` threads miss at once; each fetch takes `SLOW` and answers
    /// `answer`. Returns how many fetches ran, what each caller got and
    /// the longest a caller waited.
    fn concurrent_misses(
        cache: &MetadataCache<u32>,
        answer: ToolResult<u32>,
    ) -> (usize, Vec<ToolResult<Arc<u32>>>, Duration) {
        let fetches = AtomicUsize::new(0);
        let start = Barrier::new(CALLERS);
        let (results, waits): (Vec<_>, Vec<_>) = std::thread::scope(|s| {
            let callers: Vec<_> = (0..CALLERS)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let began = Instant::now();
                        let got = cache.get(|| {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(SLOW);
                            answer.clone()
                        });
                        (got, began.elapsed())
                    })
                })
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).unzip()
        });
        let longest = waits.into_iter().max().unwrap_or_default();
        (fetches.load(Ordering::SeqCst), results, longest)
    }

    #[test]
    fn concurrent_misses_share_one_failed_fetch_and_its_error() {
        let cache = MetadataCache::new(Duration::from_secs(60));
        let down = ToolError::new(ErrorCode::KafkaUnavailable, "fetching cluster metadata");
        let (fetches, results, longest) = concurrent_misses(&cache, Err(down.clone()));
        assert_eq!(fetches, 1, "every caller asked Kafka itself");
        assert!(
            results.iter().all(|r| r.as_ref() == Err(&down)),
            "{results:?}"
        );
        // One fetch's time, not one per caller in turn (5 s).
        assert!(longest < SLOW * 2, "a caller waited {longest:?}");
        // A failure is not kept: the next call asks again.
        let (fetches, results, _) = concurrent_misses(&cache, Ok(7));
        assert_eq!(fetches, 1);
        assert!(
            results.iter().all(|r| r.as_deref() == Ok(&7)),
            "{results:?}"
        );
    }

    #[test]
    fn an_answer_is_kept_until_max_age_after_it_was_asked() {
        let max_age = Duration::from_secs(1);
        let cache = MetadataCache::new(max_age);
        let slow = cache.get(|| {
            std::thread::sleep(max_age + Duration::from_millis(50));
            Ok(1)
        });
        assert_eq!(*slow.unwrap(), 1);
        // Asked longer ago than the max age (the fetch took that long).
        assert_eq!(*cache.get(|| Ok(2)).unwrap(), 2);
        assert_eq!(*cache.get(|| Ok(3)).unwrap(), 2, "a fresh answer is kept");
        std::thread::sleep(max_age + Duration::from_millis(50));
        assert_eq!(*cache.get(|| Ok(4)).unwrap(), 4);
    }

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
