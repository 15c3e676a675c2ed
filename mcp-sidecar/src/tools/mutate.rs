//! Tools that change Kafka. Each accepts `dry_run`, which validates against
//! the live cluster (Kafka's validate-only admin requests where they exist)
//! and returns what would change without changing it.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use rdkafka::admin::{AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::observe::{Freshness, partitions_of, topic_configs};
use super::{ToolContext, validate};
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::incremental_alter::ConfigOp;
use crate::kafka::Kafka;
use crate::schema::WireSchema;

/// Options of a topic change: Kafka waits up to the request timeout for
/// the change to be made (not only accepted), or only validates it.
fn change_options(kafka: &Kafka, options: AdminOptions, dry_run: bool) -> AdminOptions {
    options
        .operation_timeout(Some(kafka.timeout()))
        .validate_only(dry_run)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicArgs {
    pub topic: String,
    pub partitions: i32,
    /// Copies of each partition; default: the broker's default.
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// Topic configs, e.g. {"retention.ms": "86400000"}.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateTopicResult {
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: Option<i32>,
    pub configs: BTreeMap<String, String>,
    pub dry_run: bool,
    pub created: bool,
}

pub async fn create_topic(
    ctx: &ToolContext,
    args: CreateTopicArgs,
) -> ToolResult<CreateTopicResult> {
    validate::topic_name(&args.topic)?;
    if !(1..=10_000).contains(&args.partitions) {
        return Err(ToolError::invalid("partitions must be between 1 and 10000"));
    }
    if let Some(rf) = args.replication_factor
        && !(1..=32).contains(&rf)
    {
        return Err(ToolError::invalid(
            "replication_factor must be between 1 and 32",
        ));
    }
    let mut topic = NewTopic::new(
        &args.topic,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor.unwrap_or(-1)),
    );
    for (k, v) in &args.configs {
        topic = topic.set(k, v);
    }
    let what = format!("create topic {:?}", args.topic);
    ctx.kafka
        .admin(&what, |admin, options| {
            admin.create_topics([&topic], &change_options(&ctx.kafka, options, args.dry_run))
        })
        .await?;
    if !args.dry_run {
        wait_for_partitions(ctx, &args.topic, args.partitions as usize).await;
    }
    Ok(CreateTopicResult {
        created: !args.dry_run,
        topic: args.topic,
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        configs: args.configs,
        dry_run: args.dry_run,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteTopicArgs {
    pub topic: String,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteTopicResult {
    pub topic: String,
    pub partitions: usize,
    /// Messages retained when the call was made (all lost on delete).
    pub retained_messages: i64,
    pub dry_run: bool,
    pub deleted: bool,
}

pub async fn delete_topic(
    ctx: &ToolContext,
    args: DeleteTopicArgs,
) -> ToolResult<DeleteTopicResult> {
    validate::topic_name(&args.topic)?;
    // Kafka has no validate-only delete: the dry run reads what would go.
    let topic = args.topic.clone();
    let (partitions, retained) = ctx
        .kafka
        .blocking(move |k| {
            let partitions = partitions_of(k, &topic, Freshness::Live)?;
            let retained = k
                .watermarks_of(&topic, &partitions)?
                .values()
                .map(|(low, high)| high - low)
                .sum::<i64>();
            Ok((partitions.len(), retained))
        })
        .await?;
    if !args.dry_run {
        let what = format!("delete topic {:?}", args.topic);
        ctx.kafka
            .admin(&what, |admin, options| {
                admin.delete_topics(&[&args.topic], &change_options(&ctx.kafka, options, false))
            })
            .await?;
    }
    Ok(DeleteTopicResult {
        topic: args.topic,
        partitions,
        retained_messages: retained,
        dry_run: args.dry_run,
        deleted: !args.dry_run,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePartitionsArgs {
    pub topic: String,
    /// The new total partition count (must exceed the current one).
    pub total: usize,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatePartitionsResult {
    pub topic: String,
    pub before: usize,
    pub after: usize,
    pub dry_run: bool,
}

pub async fn create_partitions(
    ctx: &ToolContext,
    args: CreatePartitionsArgs,
) -> ToolResult<CreatePartitionsResult> {
    validate::topic_name(&args.topic)?;
    if args.total > 10_000 {
        return Err(ToolError::invalid("total must be at most 10000"));
    }
    let topic = args.topic.clone();
    let before = ctx
        .kafka
        .blocking(move |k| partitions_of(k, &topic, Freshness::Live).map(|p| p.len()))
        .await?;
    if args.total <= before {
        return Err(ToolError::invalid(format!(
            "topic {:?} already has {before} partitions; the new total must be larger (Kafka cannot remove partitions)",
            args.topic
        )));
    }
    let what = format!("create partitions for {:?}", args.topic);
    let partitions = NewPartitions::new(&args.topic, args.total);
    ctx.kafka
        .admin(&what, |admin, options| {
            admin.create_partitions(
                [&partitions],
                &change_options(&ctx.kafka, options, args.dry_run),
            )
        })
        .await?;
    if !args.dry_run {
        wait_for_partitions(ctx, &args.topic, args.total).await;
    }
    Ok(CreatePartitionsResult {
        topic: args.topic,
        before,
        after: args.total,
        dry_run: args.dry_run,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTopicConfigArgs {
    pub topic: String,
    /// Configs to set, e.g. {"retention.ms": "3600000"}.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Configs to remove (they fall back to the broker default).
    #[serde(default)]
    pub delete: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UpdateTopicConfigResult {
    pub topic: String,
    pub changes: Vec<ConfigChange>,
    pub dry_run: bool,
    /// Whether the broker already reports the new values (it applies them
    /// asynchronously; the call waits up to the Kafka timeout for that).
    pub visible: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConfigChange {
    pub name: String,
    /// Absent when the config had its default value.
    pub before: Option<String>,
    /// Absent when the config is removed (back to its default).
    pub after: Option<String>,
}

/// Kafka's IncrementalAlterConfigs (see `incremental_alter`): only the named
/// configs change. The current values are read first for the diff.
pub async fn update_topic_config(
    ctx: &ToolContext,
    args: UpdateTopicConfigArgs,
) -> ToolResult<UpdateTopicConfigResult> {
    validate::topic_name(&args.topic)?;
    if args.set.is_empty() && args.delete.is_empty() {
        return Err(ToolError::invalid(
            "name at least one config in set or delete",
        ));
    }
    if let Some(both) = args.delete.iter().find(|k| args.set.contains_key(*k)) {
        return Err(ToolError::invalid(format!(
            "config {both:?} is both set and deleted"
        )));
    }
    let topic = args.topic.clone();
    ctx.kafka
        .blocking(move |k| partitions_of(k, &topic, Freshness::Live))
        .await?;
    let current: BTreeMap<String, Option<String>> = topic_configs(&ctx.kafka, &args.topic, false)
        .await?
        .into_iter()
        .map(|c| (c.name, c.value))
        .collect();
    let before = |name: &str| current.get(name).cloned().flatten();
    let mut changes: Vec<ConfigChange> = args
        .delete
        .iter()
        .map(|name| ConfigChange {
            name: name.clone(),
            before: before(name),
            after: None,
        })
        .collect();
    changes.extend(args.set.iter().map(|(name, value)| ConfigChange {
        name: name.clone(),
        before: before(name),
        after: Some(value.clone()),
    }));
    let dry_run = args.dry_run;
    let (topic, set, delete) = (args.topic.clone(), args.set, args.delete);
    ctx.kafka
        .blocking(move |k| {
            let ops: Vec<ConfigOp<'_>> = delete
                .iter()
                .map(|name| ConfigOp::Delete(name))
                .chain(set.iter().map(|(name, value)| ConfigOp::Set(name, value)))
                .collect();
            k.alter_topic_configs(&topic, &ops, dry_run)
        })
        .await?;
    let visible = !dry_run && wait_until_visible(ctx, &args.topic, &changes).await;
    Ok(UpdateTopicConfigResult {
        topic: args.topic,
        changes,
        dry_run,
        visible,
    })
}

/// In KRaft a broker applies a config change when it replays the metadata
/// log, so a DescribeConfigs right after the change can still show the old
/// value. Wait (bounded by the Kafka timeout) until the broker reports the
/// new values, so that the caller's next read sees its own write.
async fn wait_until_visible(ctx: &ToolContext, topic: &str, changes: &[ConfigChange]) -> bool {
    let deadline = tokio::time::Instant::now() + ctx.kafka.timeout();
    loop {
        if let Ok(now) = topic_configs(&ctx.kafka, topic, false).await {
            let value = |name: &str| {
                now.iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.value.clone())
            };
            if changes.iter().all(|c| value(&c.name) == c.after) {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The same for a new topic or new partitions: wait (bounded by the Kafka
/// timeout) until the broker's metadata lists them, so that the caller's
/// next read (which asks Kafka anew: mutations drop the metadata cache)
/// sees its own write. Seen on a fresh broker: CreateTopics answered, the
/// next metadata request did not list the topic yet.
async fn wait_for_partitions(ctx: &ToolContext, topic: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + ctx.kafka.timeout();
    loop {
        let t = topic.to_string();
        let listed = ctx
            .kafka
            .blocking(move |k| partitions_of(k, &t, Freshness::Live))
            .await;
        if listed.is_ok_and(|p| p.len() == count) || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The string's UTF-8 bytes.
    #[default]
    Text,
    /// The string is base64 of the bytes.
    Base64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    pub topic: String,
    #[serde(default)]
    pub key: Option<String>,
    pub value: String,
    /// How `key` and `value` are encoded.
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A partition; default: chosen by the key's hash.
    #[serde(default)]
    pub partition: Option<i32>,
    /// Encode `value` with a schema from the schema registry (where this
    /// server has one): `value` is then the record as JSON text, validated
    /// and written in Confluent's wire format. Nothing is written if it
    /// does not fit.
    #[serde(default)]
    pub value_schema: Option<SchemaChoice>,
    /// The same for `key`.
    #[serde(default)]
    pub key_schema: Option<SchemaChoice>,
    #[serde(default)]
    pub dry_run: bool,
}

/// Which registered schema to encode with.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaChoice {
    /// Default: `<topic>-value` (or `<topic>-key`), Confluent's
    /// TopicNameStrategy.
    #[serde(default)]
    pub subject: Option<String>,
    /// A version number; default: the subject's latest.
    #[serde(default)]
    pub version: Option<i32>,
    /// Protobuf only: the message type (full name, or without the
    /// package); default: the schema's first message.
    #[serde(default)]
    pub message: Option<String>,
}

impl SchemaChoice {
    /// The subject this choice names for `topic`'s `part` (key or value).
    pub fn subject_for(&self, topic: &str, part: &str) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| format!("{topic}-{part}"))
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PublishResult {
    pub topic: String,
    /// The partition written (the requested one in a dry run, if any).
    pub partition: Option<i32>,
    /// The message's offset; absent in a dry run.
    pub offset: Option<i64>,
    pub bytes: usize,
    /// The schema the key was encoded with (`key_schema`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_schema: Option<WireSchema>,
    /// The schema the value was encoded with (`value_schema`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_schema: Option<WireSchema>,
    pub dry_run: bool,
}

fn bytes_of(text: &str, encoding: Encoding, field: &str) -> ToolResult<Vec<u8>> {
    match encoding {
        Encoding::Text => Ok(text.as_bytes().to_vec()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| ToolError::invalid(format!("{field} is not valid base64: {e}"))),
    }
}

/// `text` as the bytes to write: its encoding's bytes, or with `schema`
/// the JSON it holds encoded with a registered schema.
async fn payload_of(
    ctx: &ToolContext,
    text: &str,
    args: &PublishArgs,
    part: &str,
    schema: Option<&SchemaChoice>,
) -> ToolResult<(Vec<u8>, Option<WireSchema>)> {
    let Some(choice) = schema else {
        return Ok((bytes_of(text, args.encoding, part)?, None));
    };
    let Some(registry) = &ctx.schema_registry else {
        return Err(ToolError::invalid(format!(
            "{part}_schema needs a schema registry, and this server has none"
        )));
    };
    if matches!(args.encoding, Encoding::Base64) {
        return Err(ToolError::invalid(format!(
            "{part}_schema takes {part} as JSON text, not base64"
        )));
    }
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ToolError::invalid(format!("{part} is not JSON text: {e}")))?;
    let subject = choice.subject_for(&args.topic, part);
    let (bytes, with) = crate::schema::encode(
        registry,
        part,
        &subject,
        choice.version,
        choice.message.as_deref(),
        &json,
    )
    .await?;
    Ok((bytes, Some(with)))
}

pub async fn publish_message(ctx: &ToolContext, args: PublishArgs) -> ToolResult<PublishResult> {
    validate::topic_name(&args.topic)?;
    let (key, key_schema) = match args.key.as_deref() {
        Some(k) => {
            let (bytes, with) = payload_of(ctx, k, &args, "key", args.key_schema.as_ref()).await?;
            (Some(bytes), with)
        }
        None if args.key_schema.is_some() => {
            return Err(ToolError::invalid("key_schema needs a key"));
        }
        None => (None, None),
    };
    let (value, value_schema) =
        payload_of(ctx, &args.value, &args, "value", args.value_schema.as_ref()).await?;
    let size = key.as_ref().map_or(0, Vec::len)
        + value.len()
        + args
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > ctx.limits.max_publish_bytes {
        return Err(ToolError::new(
            ErrorCode::LimitExceeded,
            format!(
                "message is {size} bytes; this server accepts at most {}",
                ctx.limits.max_publish_bytes
            ),
        ));
    }
    let topic = args.topic.clone();
    let partition = args.partition;
    ctx.kafka
        .blocking(move |k| {
            let partitions = partitions_of(k, &topic, Freshness::Live)?;
            match partition {
                Some(p) if !partitions.contains(&p) => Err(ToolError::not_found(format!(
                    "topic {topic:?} has no partition {p} (it has {})",
                    partitions.len()
                ))),
                _ => Ok(()),
            }
        })
        .await?;
    if args.dry_run {
        return Ok(PublishResult {
            topic: args.topic,
            partition: args.partition,
            offset: None,
            bytes: size,
            key_schema,
            value_schema,
            dry_run: true,
        });
    }
    let mut headers = OwnedHeaders::new();
    for (k, v) in &args.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut record = FutureRecord::to(&args.topic)
        .payload(&value)
        .headers(headers);
    if let Some(k) = &key {
        record = record.key(k);
    }
    if let Some(p) = args.partition {
        record = record.partition(p);
    }
    let delivered = ctx
        .kafka
        .produce(&format!("publish to {:?}", args.topic), record)
        .await?;
    Ok(PublishResult {
        topic: args.topic,
        partition: Some(delivered.partition),
        offset: Some(delivered.offset),
        bytes: size,
        key_schema,
        value_schema,
        dry_run: false,
    })
}
