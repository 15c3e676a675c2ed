//! The peek consumers: at most `PEEK_CONSUMERS` peeks at once, each on a
//! consumer kept connected between peeks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{BlockingKafka, Kafka, PeekingConsumer, QuietEof};
use crate::error::{ErrorCode, ToolError, ToolResult};

/// Peeks at once, and peek consumers kept connected between peeks: a
/// bound on their memory (threads, connections, up to 4 MiB prefetched
/// each) however many agents peek; more peeks wait for a consumer.
pub const PEEK_CONSUMERS: usize = 8;

pub(super) struct PeekPool {
    /// What a new peek consumer is made with (`settings::peek_consumer_config`).
    config: ClientConfig,
    /// Peek consumers between peeks: unassigned, never subscribed or committed.
    idle: Mutex<Vec<PeekingConsumer>>,
    /// One permit per peek running.
    slots: Semaphore,
}

impl PeekPool {
    pub(super) fn new(config: ClientConfig) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(PEEK_CONSUMERS),
        }
    }
}

/// The right to run one peek, held until dropped.
pub struct PeekSlot<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Kafka {
    /// Waits up to `wait` for a free peek slot (without a thread: waiting
    /// peeks cost no more than their request); a server whose slots stay
    /// busy says so, as worth retrying.
    pub async fn peek_slot(&self, wait: Duration) -> ToolResult<PeekSlot<'_>> {
        match tokio::time::timeout(wait, self.peeks.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(PeekSlot { _permit: permit }),
            _ => {
                let mut busy = ToolError::new(
                    ErrorCode::LimitExceeded,
                    format!("{PEEK_CONSUMERS} peeks are running on this server; try again"),
                );
                busy.retriable = true;
                Err(busy)
            }
        }
    }

    /// Runs one peek: a slot (waiting up to `wait` for one), then `f` off
    /// the async runtime with a pooled consumer; classified as `blocking`.
    pub async fn peek<T, F>(self: &Arc<Self>, wait: Duration, f: F) -> ToolResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&BlockingKafka<'_>, &PeekConsumer<'_>) -> ToolResult<T> + Send + 'static,
    {
        let _slot = self.peek_slot(wait).await?;
        self.blocking(move |k| f(k, &k.peek_consumer()?)).await
    }
}

impl BlockingKafka<'_> {
    /// A consumer for one peek (the caller holds a slot): assign it
    /// partitions and offsets, poll, and drop it; it is unassigned and kept
    /// for the next peek. Reuse skips a new consumer's connect and metadata
    /// round trips (most of a small peek's time). Never joins its group or
    /// commits.
    fn peek_consumer(&self) -> ToolResult<PeekConsumer<'_>> {
        let pool = &self.kafka.peeks;
        let idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let consumer = match idle {
            Some(consumer) => consumer,
            None => pool
                .config
                .create_with_context(QuietEof)
                .map_err(|e| ToolError::from_kafka("creating a consumer", &e))?,
        };
        Ok(PeekConsumer {
            consumer: Some(consumer),
            idle: &pool.idle,
        })
    }
}

/// A peek consumer on loan; back to the idle ones when dropped.
pub struct PeekConsumer<'a> {
    consumer: Option<PeekingConsumer>,
    idle: &'a Mutex<Vec<PeekingConsumer>>,
}

impl std::ops::Deref for PeekConsumer<'_> {
    type Target = PeekingConsumer;

    fn deref(&self) -> &PeekingConsumer {
        self.consumer.as_ref().expect("present until dropped")
    }
}

impl PeekConsumer<'_> {
    /// The partition's high watermark as the last fetch response said it
    /// (librdkafka stores it before it hands out that response's
    /// messages); no request.
    pub fn fetched_high_watermark(&self, topic: &std::ffi::CStr, partition: i32) -> Option<i64> {
        super::ffi::fetched_high_watermark(self.client().native_client(), topic, partition)
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
