//! Offset lookups: ListOffsets for many partitions in one request per leader.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::BlockingKafka;
use crate::error::{ToolError, ToolResult};

impl BlockingKafka<'_> {
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
        self.offsets_via(&self.kafka.lookup, topic, partitions, at)
    }

    /// `offsets_at`, asked on `client`'s own connection (a peek asks on its
    /// consumer's, so that concurrent peeks do not queue behind each other
    /// on the shared lookup connection).
    pub fn offsets_via<C: ConsumerContext>(
        &self,
        client: &BaseConsumer<C>,
        topic: &str,
        partitions: &[i32],
        at: Offset,
    ) -> ToolResult<BTreeMap<i32, i64>> {
        let timeout = self.kafka.timeout;
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
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        let mut retries = 4;
        let found = loop {
            let found = client.offsets_for_times(query.clone(), timeout);
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
                .fetch_metadata(Some(topic), timeout)
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
}
