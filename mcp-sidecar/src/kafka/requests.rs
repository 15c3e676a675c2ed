//! Requests that tools make: admin requests, produce, consumer groups and
//! their offsets, and the cluster's ID. Each answers with classified errors.

use std::future::Future;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::FutureRecord;
use rdkafka::producer::future_producer::Delivery;

use super::acls::{self, AclAnswer, AclFilter};
use super::consumer_groups::{self, GroupDetail, GroupListing};
use super::{Admin, BlockingKafka, Kafka, settings};
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::incremental_alter::{ConfigOp, alter_topic_configs};

/// What an admin request answers for each resource it names: a value, or
/// Kafka's error code for that resource.
pub trait PerResource {
    type Value;
    fn into_result(self) -> Result<Self::Value, RDKafkaErrorCode>;
}

/// CreateTopics, DeleteTopics, CreatePartitions, DeleteGroups.
impl<T> PerResource for Result<T, (String, RDKafkaErrorCode)> {
    type Value = T;
    fn into_result(self) -> Result<T, RDKafkaErrorCode> {
        self.map_err(|(_, code)| code)
    }
}

/// DescribeConfigs.
impl<T> PerResource for Result<T, RDKafkaErrorCode> {
    type Value = T;
    fn into_result(self) -> Self {
        self
    }
}

impl Kafka {
    /// One admin request; `what` names it in errors. `call` gets the
    /// client and options with this server's request timeout (add what the
    /// request needs: an operation timeout, validate-only). The answer is
    /// each resource's value, or the first resource's error; every error
    /// classified.
    pub async fn admin<R, F, Fut>(&self, what: &str, call: F) -> ToolResult<Vec<R::Value>>
    where
        R: PerResource,
        F: FnOnce(&Admin, AdminOptions) -> Fut,
        Fut: Future<Output = KafkaResult<Vec<R>>>,
    {
        let options = AdminOptions::new().request_timeout(Some(self.timeout));
        let answered = call(&self.admin, options)
            .await
            .map_err(|e| ToolError::from_kafka(what, &e))
            .and_then(|resources| {
                resources
                    .into_iter()
                    .map(|r| {
                        r.into_result()
                            .map_err(|code| ToolError::from_kafka_code(what, code))
                    })
                    .collect()
            });
        answered.map_err(|e| self.classify(e))
    }

    /// Produces one record with acks=all and waits (within the request
    /// timeout, plus a second for the delivery report) for its delivery.
    pub async fn produce<K, P>(
        &self,
        what: &str,
        record: FutureRecord<'_, K, P>,
    ) -> ToolResult<Delivery>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let timeout = self.timeout;
        let delivered = tokio::time::timeout(
            timeout + Duration::from_secs(1),
            self.producer.send(record, timeout),
        )
        .await;
        let delivered = match delivered {
            Ok(Ok(delivery)) => Ok(delivery),
            Ok(Err((e, _))) => Err(ToolError::from_kafka(what, &e)),
            Err(_) => Err(ToolError::new(
                ErrorCode::Timeout,
                format!("{what}: no acknowledgement within {timeout:?}"),
            )),
        };
        delivered.map_err(|e| self.classify(e))
    }
}

/// Kafka's refusal of `group` to this principal, if `consumer` (which
/// carries the group's ID) was told so: librdkafka reports a refused
/// FindCoordinator once, on the consumer's queue, and the request that
/// needed the coordinator then waits out its timeout. Read after a failure,
/// so that it says PERMISSION_DENIED naming the group, not TIMEOUT.
fn refused_group(consumer: &BaseConsumer, group: &str) -> Option<ToolError> {
    // A fresh consumer that never joined: its queue holds a few events at most.
    for _ in 0..16 {
        match consumer.poll(Duration::ZERO)? {
            Err(e)
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed) =>
            {
                return Some(ToolError::from_kafka(&format!("group {group:?}"), &e));
            }
            _ => {}
        }
    }
    None
}

impl BlockingKafka<'_> {
    /// Every consumer group, of either group protocol (see `consumer_groups`).
    pub fn consumer_groups(&self) -> ToolResult<Vec<GroupListing>> {
        consumer_groups::list(self.kafka.admin.inner().native_client(), self.kafka.timeout)
    }

    /// `group` as its coordinator describes it, of either group protocol.
    pub fn describe_consumer_group(&self, group: &str) -> ToolResult<GroupDetail> {
        consumer_groups::describe(
            self.kafka.admin.inner().native_client(),
            group,
            self.kafka.timeout,
        )
    }

    /// The ACLs `filter` selects (see `acls`).
    pub fn describe_acls(&self, filter: &AclFilter) -> ToolResult<AclAnswer> {
        acls::describe(
            self.kafka.admin.inner().native_client(),
            filter,
            self.kafka.timeout,
        )
    }

    /// A new consumer that carries `group`'s ID but never joins it.
    fn group_consumer(&self, group: &str) -> ToolResult<BaseConsumer> {
        settings::group_consumer_config(&self.kafka.base, group)
            .create()
            .map_err(|e| ToolError::from_kafka("creating a consumer", &e))
    }

    /// `group`'s committed offsets for `partitions` (OffsetFetch).
    pub fn committed_offsets(
        &self,
        group: &str,
        partitions: TopicPartitionList,
    ) -> ToolResult<TopicPartitionList> {
        let consumer = self.group_consumer(group)?;
        consumer
            .committed_offsets(partitions, self.kafka.timeout)
            .map_err(|e| {
                refused_group(&consumer, group).unwrap_or_else(|| {
                    ToolError::from_kafka(
                        &format!("fetching committed offsets of group {group:?}"),
                        &e,
                    )
                })
            })
    }

    /// Commits `offsets` for `group`, which Kafka accepts only while the
    /// group has no members.
    pub fn commit_offsets(&self, group: &str, offsets: &TopicPartitionList) -> ToolResult<()> {
        let consumer = self.group_consumer(group)?;
        consumer.commit(offsets, CommitMode::Sync).map_err(|e| {
            refused_group(&consumer, group).unwrap_or_else(|| {
                ToolError::from_kafka(&format!("committing offsets for group {group:?}"), &e)
            })
        })
    }

    /// IncrementalAlterConfigs of one topic (see `crate::incremental_alter`).
    pub fn alter_topic_configs(
        &self,
        topic: &str,
        ops: &[ConfigOp<'_>],
        validate_only: bool,
    ) -> ToolResult<()> {
        alter_topic_configs(
            &self.kafka.admin,
            topic,
            ops,
            validate_only,
            self.kafka.timeout,
        )
    }

    /// The cluster's ID, asked now (None when Kafka does not say in time).
    pub fn fetch_cluster_id(&self) -> Option<String> {
        super::ffi::cluster_id(self.kafka.admin.inner().native_client(), self.kafka.timeout)
    }
}
