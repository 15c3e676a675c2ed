//! Read-only tools over cluster metadata, topic offsets and configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::Offset;
use rdkafka::admin::{ConfigSource, ResourceSpecifier};
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::types::RDKafkaErrorCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ToolContext, validate};
use crate::error::{ToolError, ToolResult};
use crate::kafka::{BlockingKafka, IndexedMetadata, Kafka};

/// No arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterStatusArgs {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ClusterStatus {
    pub cluster_id: Option<String>,
    pub broker_count: usize,
    pub brokers: Vec<Broker>,
    pub topic_count: usize,
    pub partition_count: usize,
    /// Partitions whose in-sync replicas are fewer than their replicas.
    pub under_replicated_partitions: usize,
    /// Partitions with no leader (unavailable for reads and writes).
    pub offline_partitions: usize,
    /// The counts are of the topics in this server's scope only.
    pub scoped: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

fn brokers(md: &Metadata) -> Vec<Broker> {
    let mut brokers: Vec<Broker> = md
        .brokers()
        .iter()
        .map(|b| Broker {
            id: b.id(),
            host: b.host().to_string(),
            port: b.port(),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    brokers
}

pub async fn cluster_status(ctx: &ToolContext, _: ClusterStatusArgs) -> ToolResult<ClusterStatus> {
    let (in_scope, scoped) = (ctx.topics_in_scope(), ctx.scoped());
    ctx.kafka
        .blocking(move |k| {
            let md = k.cluster_metadata()?;
            let topics: Vec<&MetadataTopic> =
                md.topics().iter().filter(|t| in_scope(t.name())).collect();
            let partitions = topics.iter().flat_map(|t| t.partitions());
            let (mut total, mut under, mut offline) = (0, 0, 0);
            for p in partitions {
                total += 1;
                under += usize::from(p.isr().len() < p.replicas().len());
                offline += usize::from(p.leader() < 0);
            }
            Ok(ClusterStatus {
                cluster_id: k.fetch_cluster_id(),
                broker_count: md.brokers().len(),
                brokers: brokers(&md),
                topic_count: topics.len(),
                partition_count: total,
                under_replicated_partitions: under,
                offline_partitions: offline,
                scoped,
            })
        })
        .await
}

/// No arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBrokersArgs {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BrokerList {
    pub brokers: Vec<Broker>,
}

pub async fn list_brokers(ctx: &ToolContext, _: ListBrokersArgs) -> ToolResult<BrokerList> {
    ctx.kafka
        .blocking(|k| {
            Ok(BrokerList {
                brokers: brokers(&*k.cluster_metadata()?),
            })
        })
        .await
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTopicsArgs {
    /// Only topics whose name contains this substring.
    #[serde(default)]
    pub name_contains: Option<String>,
    /// Include internal topics (names starting with `_`).
    #[serde(default)]
    pub include_internal: bool,
    /// Most topics to return (default and cap: the server's list limit).
    #[serde(default)]
    pub limit: Option<usize>,
    /// `next_cursor` from a previous answer, to continue after it.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
    /// Topics matching the filter, across all pages.
    pub total: usize,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Only topics in this server's scope are listed (and counted).
    pub scoped: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: usize,
    pub replication_factor: usize,
    pub internal: bool,
}

fn is_internal(topic: &str) -> bool {
    topic.starts_with('_')
}

pub async fn list_topics(ctx: &ToolContext, args: ListTopicsArgs) -> ToolResult<TopicList> {
    let limit = validate::capped(
        "limit",
        args.limit,
        ctx.limits.max_list_items,
        ctx.limits.max_list_items,
    )?;
    let (in_scope, scoped) = (ctx.topics_in_scope(), ctx.scoped());
    ctx.kafka
        .blocking(move |k| {
            let md = k.cluster_metadata()?;
            let mut topics: Vec<TopicSummary> = md
                .topics()
                .iter()
                .filter(|t| args.include_internal || !is_internal(t.name()))
                .filter(|t| in_scope(t.name()))
                .filter(|t| {
                    args.name_contains
                        .as_deref()
                        .is_none_or(|s| t.name().contains(s))
                })
                .map(|t| TopicSummary {
                    name: t.name().to_string(),
                    partitions: t.partitions().len(),
                    replication_factor: t.partitions().first().map_or(0, |p| p.replicas().len()),
                    internal: is_internal(t.name()),
                })
                .collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            let total = topics.len();
            // The cursor is the last name of the previous page: stable while
            // topics come and go, unlike an index.
            let start = args
                .cursor
                .as_deref()
                .map_or(0, |c| topics.partition_point(|t| t.name.as_str() <= c));
            let page: Vec<TopicSummary> = topics.into_iter().skip(start).take(limit).collect();
            let next_cursor = (start + page.len() < total)
                .then(|| page.last().map(|t| t.name.clone()))
                .flatten();
            Ok(TopicList {
                topics: page,
                total,
                next_cursor,
                scoped,
            })
        })
        .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicArgs {
    pub topic: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopicDescription {
    pub name: String,
    pub internal: bool,
    pub partitions: Vec<PartitionDescription>,
    /// Total messages currently retained (sum of latest - earliest).
    pub retained_messages: i64,
    /// Configs that differ from the broker's defaults.
    pub configs: BTreeMap<String, String>,
    /// Set when the topic has more partitions than the list limit shows.
    pub partitions_truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PartitionDescription {
    pub partition: i32,
    /// Broker ID of the leader, or -1 when there is none.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub earliest_offset: i64,
    pub latest_offset: i64,
}

/// One topic's metadata, or `NOT_FOUND` saying so plainly.
fn find_topic<'a>(md: &'a IndexedMetadata, topic: &str) -> ToolResult<&'a MetadataTopic> {
    let missing = || ToolError::not_found(format!("topic {topic:?} does not exist"));
    let t = md.topic(topic).ok_or_else(missing)?;
    match t.error().map(RDKafkaErrorCode::from) {
        None => Ok(t),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            Err(missing())
        }
        Some(code) => Err(ToolError::from_kafka_code(
            &format!("topic {topic:?}"),
            code,
        )),
    }
}

/// How fresh the metadata a tool reads must be.
#[derive(Clone, Copy)]
pub(super) enum Freshness {
    /// Observe tools: the cluster metadata as cached (`kafka.metadataMaxAgeMs`).
    Cached,
    /// Mutations and their dry runs: asked of Kafka now.
    Live,
}

/// Metadata that holds `topic`, or `NOT_FOUND`. A topic missing from the
/// cache is asked for live before it is called missing (it may be new).
fn topic_metadata(
    k: &BlockingKafka,
    topic: &str,
    freshness: Freshness,
) -> ToolResult<Arc<IndexedMetadata>> {
    if let Freshness::Cached = freshness
        && k.caches_metadata()
    {
        let md = k.cluster_metadata()?;
        if find_topic(&md, topic).is_ok() {
            return Ok(md);
        }
    }
    let md = Arc::new(k.metadata(Some(topic))?);
    find_topic(&md, topic)?;
    Ok(md)
}

/// Partition IDs of a topic, or `NOT_FOUND`.
pub(super) fn partitions_of(
    k: &BlockingKafka,
    topic: &str,
    freshness: Freshness,
) -> ToolResult<Vec<i32>> {
    let md = topic_metadata(k, topic, freshness)?;
    Ok(find_topic(&md, topic)?
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect())
}

pub async fn describe_topic(ctx: &ToolContext, args: TopicArgs) -> ToolResult<TopicDescription> {
    validate::topic_name(&args.topic)?;
    let cap = ctx.limits.max_list_items;
    let kafka = ctx.kafka.clone();
    let topic = args.topic.clone();
    let configs = topic_configs(&kafka, &topic, false);
    let description = ctx.kafka.blocking(move |k| {
        let md = topic_metadata(k, &args.topic, Freshness::Cached)?;
        let t = find_topic(&md, &args.topic)?;
        let ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        let marks = k.watermarks_of(&args.topic, &ids)?;
        let mut partitions = Vec::new();
        let mut retained = 0;
        for p in t.partitions() {
            let (low, high) = marks.get(&p.id()).copied().unwrap_or_default();
            retained += high - low;
            partitions.push(PartitionDescription {
                partition: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
                earliest_offset: low,
                latest_offset: high,
            });
        }
        partitions.sort_by_key(|p| p.partition);
        let truncated = partitions.len() > cap;
        partitions.truncate(cap);
        Ok(TopicDescription {
            name: args.topic.clone(),
            internal: is_internal(&args.topic),
            partitions,
            retained_messages: retained,
            configs: BTreeMap::new(),
            partitions_truncated: truncated,
        })
    });
    let (description, configs) = tokio::join!(description, configs);
    let mut description = description?;
    description.configs = configs?
        .into_iter()
        .map(|c| (c.name, c.value.unwrap_or_default()))
        .collect();
    Ok(description)
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Topic,
    Broker,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeConfigsArgs {
    pub resource_type: ResourceType,
    /// The topic name, or the broker ID as a string.
    pub name: String,
    /// Also list settings that have their default value.
    #[serde(default)]
    pub include_defaults: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConfigDescription {
    pub configs: Vec<ConfigValue>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ConfigValue {
    pub name: String,
    /// Absent for sensitive values, which are never shown.
    pub value: Option<String>,
    pub source: String,
    pub is_default: bool,
    pub read_only: bool,
    pub sensitive: bool,
}

fn source_name(s: &ConfigSource) -> &'static str {
    match s {
        ConfigSource::Unknown => "unknown",
        ConfigSource::DynamicTopic => "dynamic_topic",
        ConfigSource::DynamicBroker => "dynamic_broker",
        ConfigSource::DynamicDefaultBroker => "dynamic_default_broker",
        ConfigSource::StaticBroker => "static_broker",
        ConfigSource::Default => "default",
    }
}

/// Describes one resource's configs through the admin API.
pub(super) async fn resource_configs(
    kafka: &Kafka,
    resource: ResourceSpecifier<'_>,
    include_defaults: bool,
) -> ToolResult<Vec<ConfigValue>> {
    let what = format!("describe configs of {resource:?}");
    let resource = kafka
        .admin(&what, |admin, options| {
            admin.describe_configs([&resource], &options)
        })
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ToolError::new(
                crate::error::ErrorCode::Internal,
                "Kafka returned no config result",
            )
        })?;
    let mut values: Vec<ConfigValue> = resource
        .entries
        .into_iter()
        .filter(|e| include_defaults || !e.is_default)
        .map(|e| ConfigValue {
            value: if e.is_sensitive { None } else { e.value },
            source: source_name(&e.source).to_string(),
            name: e.name,
            is_default: e.is_default,
            read_only: e.is_read_only,
            sensitive: e.is_sensitive,
        })
        .collect();
    values.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(values)
}

pub(super) async fn topic_configs(
    kafka: &Kafka,
    topic: &str,
    include_defaults: bool,
) -> ToolResult<Vec<ConfigValue>> {
    resource_configs(kafka, ResourceSpecifier::Topic(topic), include_defaults).await
}

pub async fn describe_configs(
    ctx: &ToolContext,
    args: DescribeConfigsArgs,
) -> ToolResult<ConfigDescription> {
    let mut configs = match args.resource_type {
        ResourceType::Topic => {
            validate::topic_name(&args.name)?;
            // The admin API answers an unknown topic with an empty config set
            // on some versions: check existence first for a precise NOT_FOUND.
            let topic = args.name.clone();
            ctx.kafka
                .blocking(move |k| partitions_of(k, &topic, Freshness::Cached))
                .await?;
            topic_configs(&ctx.kafka, &args.name, args.include_defaults).await?
        }
        ResourceType::Broker => {
            let id: i32 = args.name.parse().map_err(|_| {
                ToolError::invalid(format!(
                    "broker name must be a broker ID, got {:?}",
                    args.name
                ))
            })?;
            resource_configs(
                &ctx.kafka,
                ResourceSpecifier::Broker(id),
                args.include_defaults,
            )
            .await?
        }
    };
    let truncated = configs.len() > ctx.limits.max_list_items;
    configs.truncate(ctx.limits.max_list_items);
    Ok(ConfigDescription { configs, truncated })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchOffsetsArgs {
    pub topic: String,
    /// Only this partition (default: all).
    #[serde(default)]
    pub partition: Option<i32>,
    /// Also find, per partition, the first offset whose timestamp is at or
    /// after this time (milliseconds since the Unix epoch).
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopicOffsets {
    pub topic: String,
    pub partitions: Vec<PartitionOffsets>,
    pub truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub earliest: i64,
    pub latest: i64,
    /// With `timestamp_ms`: the first offset at or after it; `latest` when
    /// no message is that recent.
    pub at_timestamp: Option<i64>,
}

/// The partitions a call names: one (checked to exist) or all.
pub(super) fn select_partitions(
    k: &BlockingKafka,
    topic: &str,
    partition: Option<i32>,
    freshness: Freshness,
) -> ToolResult<Vec<i32>> {
    let all = partitions_of(k, topic, freshness)?;
    match partition {
        None => Ok(all),
        Some(p) if all.contains(&p) => Ok(vec![p]),
        Some(p) => Err(ToolError::not_found(format!(
            "topic {topic:?} has no partition {p} (it has {})",
            all.len()
        ))),
    }
}

/// First offsets at or after `timestamp_ms`, per partition; partitions
/// with no message that recent are left out.
pub(super) fn offsets_for_timestamp(
    k: &BlockingKafka,
    topic: &str,
    partitions: &[i32],
    timestamp_ms: i64,
) -> ToolResult<BTreeMap<i32, i64>> {
    if timestamp_ms < 0 {
        return Err(ToolError::invalid("timestamp_ms must not be negative"));
    }
    let mut found = k.offsets_at(topic, partitions, Offset::Offset(timestamp_ms))?;
    found.retain(|_, offset| *offset >= 0);
    Ok(found)
}

pub async fn fetch_offsets(ctx: &ToolContext, args: FetchOffsetsArgs) -> ToolResult<TopicOffsets> {
    validate::topic_name(&args.topic)?;
    let cap = ctx.limits.max_list_items;
    ctx.kafka
        .blocking(move |k| {
            let mut partitions =
                select_partitions(k, &args.topic, args.partition, Freshness::Cached)?;
            partitions.sort_unstable();
            let truncated = partitions.len() > cap;
            partitions.truncate(cap);
            let at = match args.timestamp_ms {
                Some(ts) => Some(offsets_for_timestamp(k, &args.topic, &partitions, ts)?),
                None => None,
            };
            let marks = k.watermarks_of(&args.topic, &partitions)?;
            let mut out = Vec::new();
            for (p, (low, high)) in marks {
                let at_timestamp = at.as_ref().map(|m| m.get(&p).copied().unwrap_or(high));
                out.push(PartitionOffsets {
                    partition: p,
                    earliest: low,
                    latest: high,
                    at_timestamp,
                });
            }
            Ok(TopicOffsets {
                topic: args.topic,
                partitions: out,
                truncated,
            })
        })
        .await
}
