//! Topic tools: list-topics, create-topics, delete-topics, get-topic-config,
//! alter-topic-config, get-partition-offsets.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    Call, CompatTool, Shape, Translation, ignored_selectors, invalid_at, native_result,
    plan_ids_per_call, plan_of, with_plan,
};
use crate::error::ToolResult;
use crate::tool_name::ToolName;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTopicsArgs {
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default)]
    pub environment_id: Option<String>,
    /// `nextCursor` of a previous answer, to continue after it (this server
    /// pages long lists).
    #[serde(default)]
    pub cursor: Option<String>,
}

pub(super) fn list_topics(args: ListTopicsArgs) -> Translation {
    // mcp-confluent lists every topic of the cluster's metadata, internal
    // ones included.
    let mut native = json!({ "include_internal": true });
    if let Some(cursor) = args.cursor {
        native["cursor"] = Value::String(cursor);
    }
    Translation::new(
        CompatTool::ListTopics,
        vec![Call::new("topics", native)],
        Shape::ListTopics,
    )
    .note(ignored_selectors(&[
        ("cluster_id", &args.cluster_id),
        ("environment_id", &args.environment_id),
    ]))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeTopicList {
    topics: Vec<NativeTopicSummary>,
    total: usize,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeTopicSummary {
    name: String,
}

pub(super) fn shape_list_topics(native: Value) -> ToolResult<(String, Value)> {
    let list: NativeTopicList = native_result(ToolName::ListTopics, native)?;
    let names: Vec<String> = list.topics.into_iter().map(|t| t.name).collect();
    let text = format!("Kafka topics: {}", names.join(","));
    let mut notes = Vec::new();
    if let Some(cursor) = &list.next_cursor {
        notes.push(format!(
            "{} of {} topics shown (this server's list cap); call again with cursor {cursor:?} for the next ones",
            names.len(),
            list.total
        ));
    }
    let structured = json!({
        "topics": names,
        "total": list.total,
        "nextCursor": list.next_cursor,
        "notes": notes,
    });
    Ok((text, structured))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewTopic {
    /// Name of the Kafka topic to create.
    #[schemars(length(min = 1))]
    pub topic: String,
    /// Number of partitions. Required here (optional in mcp-confluent,
    /// which then takes the broker's default): the native create_topic
    /// needs an explicit count.
    #[schemars(range(min = 1))]
    pub num_partitions: i64,
    /// Replication factor; default: the broker's.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub replication_factor: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicsArgs {
    /// The topics to create (at least one).
    #[schemars(length(min = 1))]
    pub topics: Vec<NewTopic>,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default)]
    pub environment_id: Option<String>,
    /// Validate against the cluster without creating; returns one plan per topic.
    #[serde(default)]
    pub dry_run: bool,
    /// With one topic: the plan its dry run returned.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// The plans the dry run returned, one per topic in the same order.
    #[serde(default)]
    pub plan_ids: Option<Vec<String>>,
}

/// A positive count that fits the native `i32`.
fn positive(tool: CompatTool, path: &str, n: i64) -> ToolResult<i32> {
    match i32::try_from(n) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(invalid_at(
            tool,
            path,
            format!("must be a positive integer, got {n}"),
        )),
    }
}

/// A non-negative partition number that fits the native `i32`.
pub(super) fn partition(tool: CompatTool, path: &str, p: i64) -> ToolResult<i32> {
    match i32::try_from(p) {
        Ok(p) if p >= 0 => Ok(p),
        _ => Err(invalid_at(
            tool,
            path,
            format!("must be a partition number (0 or more), got {p}"),
        )),
    }
}

/// Names that must be given, non-empty and each once.
fn distinct_names<'a>(
    tool: CompatTool,
    field: &str,
    names: impl Iterator<Item = (String, &'a str)>,
) -> ToolResult<()> {
    let mut seen = BTreeSet::new();
    for (path, name) in names {
        if name.is_empty() {
            return Err(invalid_at(tool, &path, "must not be empty"));
        }
        if !seen.insert(name) {
            return Err(invalid_at(
                tool,
                &path,
                format!("{name:?} is named twice in {field}"),
            ));
        }
    }
    if seen.is_empty() {
        return Err(invalid_at(tool, field, "name at least one topic"));
    }
    Ok(())
}

pub(super) fn create_topics(args: CreateTopicsArgs) -> ToolResult<Translation> {
    let tool = CompatTool::CreateTopics;
    distinct_names(
        tool,
        "topics",
        args.topics
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("topics[{i}].topic"), t.topic.as_str())),
    )?;
    let plans = plan_ids_per_call(tool, args.topics.len(), args.plan_id, args.plan_ids)?;
    let mut calls = Vec::new();
    for ((i, t), plan_id) in args.topics.into_iter().enumerate().zip(plans) {
        let at = |field: &str| format!("topics[{i}].{field}");
        let mut native = json!({
            "topic": t.topic,
            "partitions": positive(tool, &at("numPartitions"), t.num_partitions)?,
        });
        if let Some(rf) = t.replication_factor {
            native["replication_factor"] = json!(positive(tool, &at("replicationFactor"), rf)?);
        }
        calls.push(Call::new(t.topic, with_plan(native, args.dry_run, plan_id)));
    }
    Ok(
        Translation::new(tool, calls, Shape::CreateTopics).note(ignored_selectors(&[
            ("cluster_id", &args.cluster_id),
            ("environment_id", &args.environment_id),
        ])),
    )
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeCreated {
    topic: String,
    partitions: i32,
    replication_factor: Option<i32>,
    dry_run: bool,
}

/// `plans: [{topic, plan_id, expires_at}]` and `plan_ids` in call order, from
/// dry runs that returned plans.
fn plans_of(results: &[(String, Option<Value>)]) -> Option<(Value, Vec<String>)> {
    let mut plans = Vec::new();
    let mut ids = Vec::new();
    for (topic, plan) in results {
        let plan = plan.as_ref()?;
        let id = plan.get("id")?.as_str()?.to_string();
        plans.push(json!({ "topic": topic, "plan_id": id, "expires_at": plan.get("expires_at") }));
        ids.push(id);
    }
    Some((Value::Array(plans), ids))
}

/// A native mutation's answer for one topic, as the shaping of a
/// several-topic compat call reads it.
trait TopicAnswer: DeserializeOwned {
    fn topic(&self) -> &str;
    fn dry_run(&self) -> bool;
}

impl TopicAnswer for NativeCreated {
    fn topic(&self) -> &str {
        &self.topic
    }
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

/// One native answer per topic, in call order: decoded, each with the plan
/// its dry run returned (if any), and whether any was a dry run.
type PerTopic<T> = (Vec<T>, Vec<(String, Option<Value>)>, bool);

fn per_topic<T: TopicAnswer>(tool: ToolName, done: Vec<Value>) -> ToolResult<PerTopic<T>> {
    let mut answers = Vec::new();
    let mut planned = Vec::new();
    let mut dry_run = false;
    for native in done {
        let plan = plan_of(&native).cloned();
        let answer: T = native_result(tool, native)?;
        dry_run |= answer.dry_run();
        planned.push((answer.topic().to_string(), plan));
        answers.push(answer);
    }
    Ok((answers, planned, dry_run))
}

/// Adds a dry run's plans to its answer, and to its text how to apply them
/// (`again`: "To create them, call again with the same topics").
fn with_plans(
    text: &mut String,
    structured: &mut Value,
    planned: &[(String, Option<Value>)],
    again: &str,
) {
    if let Some((plans, ids)) = plans_of(planned) {
        text.push_str(&format!(". {again} and plan_ids {}", json!(ids)));
        structured["plans"] = plans;
        structured["plan_ids"] = json!(ids);
    }
}

pub(super) fn shape_create_topics(done: Vec<Value>) -> ToolResult<(String, Value)> {
    let (topics, planned, dry_run) = per_topic::<NativeCreated>(ToolName::CreateTopic, done)?;
    let names: Vec<&str> = topics.iter().map(|t| t.topic.as_str()).collect();
    let details: Vec<Value> = topics
        .iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "numPartitions": t.partitions,
                "replicationFactor": t.replication_factor,
            })
        })
        .collect();
    if !dry_run {
        let text = format!("Created Kafka topics: {}", names.join(","));
        return Ok((text, json!({ "created": names, "topics": details })));
    }
    let mut text = format!(
        "Dry run, nothing created: Kafka accepts creating topics {}",
        names.join(",")
    );
    let mut structured =
        json!({ "created": [], "validated": names, "topics": details, "dryRun": true });
    with_plans(
        &mut text,
        &mut structured,
        &planned,
        "To create them, call again with the same topics",
    );
    Ok((text, structured))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteTopicsArgs {
    /// Names of the Kafka topics to delete (at least one).
    #[schemars(length(min = 1))]
    pub topic_names: Vec<String>,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default, rename = "cluster_id")]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default, rename = "environment_id")]
    pub environment_id: Option<String>,
    /// Show what would be deleted without deleting; returns one plan per topic.
    #[serde(default, rename = "dry_run")]
    pub dry_run: bool,
    /// With one topic: the plan its dry run returned.
    #[serde(default, rename = "plan_id")]
    pub plan_id: Option<String>,
    /// The plans the dry run returned, one per topic in the same order.
    #[serde(default, rename = "plan_ids")]
    pub plan_ids: Option<Vec<String>>,
}

pub(super) fn delete_topics(args: DeleteTopicsArgs) -> ToolResult<Translation> {
    let tool = CompatTool::DeleteTopics;
    distinct_names(
        tool,
        "topicNames",
        args.topic_names
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("topicNames[{i}]"), t.as_str())),
    )?;
    let plans = plan_ids_per_call(tool, args.topic_names.len(), args.plan_id, args.plan_ids)?;
    let calls = args
        .topic_names
        .into_iter()
        .zip(plans)
        .map(|(topic, plan_id)| {
            let native = with_plan(json!({ "topic": topic }), args.dry_run, plan_id);
            Call::new(topic, native)
        })
        .collect();
    Ok(
        Translation::new(tool, calls, Shape::DeleteTopics).note(ignored_selectors(&[
            ("cluster_id", &args.cluster_id),
            ("environment_id", &args.environment_id),
        ])),
    )
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeDeleted {
    topic: String,
    partitions: usize,
    retained_messages: i64,
    dry_run: bool,
}

impl TopicAnswer for NativeDeleted {
    fn topic(&self) -> &str {
        &self.topic
    }
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

pub(super) fn shape_delete_topics(done: Vec<Value>) -> ToolResult<(String, Value)> {
    let (topics, planned, dry_run) = per_topic::<NativeDeleted>(ToolName::DeleteTopic, done)?;
    let names: Vec<&str> = topics.iter().map(|t| t.topic.as_str()).collect();
    let details: Vec<Value> = topics
        .iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "partitions": t.partitions,
                "retainedMessages": t.retained_messages,
            })
        })
        .collect();
    if !dry_run {
        let text = format!("Deleted Kafka topics: {}", names.join(","));
        return Ok((text, json!({ "deleted": names, "topics": details })));
    }
    let what: Vec<String> = topics
        .iter()
        .map(|t| {
            format!(
                "{} ({} partitions, {} messages)",
                t.topic, t.partitions, t.retained_messages
            )
        })
        .collect();
    let mut text = format!(
        "Dry run, nothing deleted: would delete Kafka topics {}",
        what.join(", ")
    );
    let mut structured =
        json!({ "deleted": [], "wouldDelete": names, "topics": details, "dryRun": true });
    with_plans(
        &mut text,
        &mut structured,
        &planned,
        "To delete them, call again with the same topicNames",
    );
    Ok((text, structured))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetTopicConfigArgs {
    /// Name of the topic to get configuration for.
    #[schemars(length(min = 1))]
    pub topic_name: String,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default)]
    pub environment_id: Option<String>,
}

pub(super) fn get_topic_config(args: GetTopicConfigArgs) -> ToolResult<Translation> {
    let tool = CompatTool::GetTopicConfig;
    if args.topic_name.is_empty() {
        return Err(invalid_at(tool, "topicName", "must not be empty"));
    }
    // The Confluent Cloud REST API lists every config, defaults included.
    let native =
        json!({ "resource_type": "topic", "name": args.topic_name, "include_defaults": true });
    Ok(Translation::new(
        tool,
        vec![Call::new(args.topic_name.clone(), native)],
        Shape::GetTopicConfig {
            topic: args.topic_name,
        },
    )
    .note(ignored_selectors(&[
        ("clusterId", &args.cluster_id),
        ("environmentId", &args.environment_id),
    ])))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeConfigs {
    configs: Vec<NativeConfig>,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeConfig {
    name: String,
    value: Option<String>,
    source: String,
    is_default: bool,
    read_only: bool,
    sensitive: bool,
}

/// The Kafka REST v3 name of a config source, as mcp-confluent shows it.
fn rest_source(native: &str) -> &'static str {
    match native {
        "dynamic_topic" => "DYNAMIC_TOPIC_CONFIG",
        "dynamic_broker" => "DYNAMIC_BROKER_CONFIG",
        "dynamic_default_broker" => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        "static_broker" => "STATIC_BROKER_CONFIG",
        "default" => "DEFAULT_CONFIG",
        _ => "UNKNOWN",
    }
}

pub(super) fn shape_get_topic_config(topic: &str, native: Value) -> ToolResult<(String, Value)> {
    let configs: NativeConfigs = native_result(ToolName::DescribeConfigs, native)?;
    let data: Vec<Value> = configs
        .configs
        .iter()
        .map(|c| {
            json!({
                "topic_name": topic,
                "name": c.name,
                "value": c.value,
                "is_default": c.is_default,
                "is_read_only": c.read_only,
                "is_sensitive": c.sensitive,
                "source": rest_source(&c.source),
            })
        })
        .collect();
    let mut notes = vec![
        "topicDetails (partitions, replication) is not part of this answer: get_topic_metadata has them".to_string(),
    ];
    if configs.truncated {
        notes.push(format!(
            "only the first {} configs are shown (this server's list cap)",
            data.len()
        ));
    }
    let structured = json!({
        "topicName": topic,
        "topicConfig": { "data": data },
        "truncated": configs.truncated,
        "notes": notes,
    });
    let text = format!(
        "Topic configuration for '{topic}':\n{}",
        serde_json::to_string_pretty(&json!({ "topicConfig": structured["topicConfig"] }))
            .unwrap_or_default()
    );
    Ok((text, structured))
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConfigOperation {
    Set,
    Delete,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfigChange {
    /// Configuration parameter name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Configuration parameter value (ignored for DELETE).
    pub value: String,
    /// SET a value, or DELETE it (back to the default).
    pub operation: ConfigOperation,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlterTopicConfigArgs {
    /// Name of the topic to alter.
    #[schemars(length(min = 1))]
    pub topic_name: String,
    /// The changes (at least one).
    #[schemars(length(min = 1))]
    pub topic_configs: Vec<TopicConfigChange>,
    /// Validate only (the same as dry_run: returns a plan).
    #[serde(default)]
    pub validate_only: bool,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default)]
    pub environment_id: Option<String>,
    /// Validate only and return a plan (the same as validateOnly).
    #[serde(default, rename = "dry_run")]
    pub dry_run: bool,
    /// Apply the plan a dry run returned, with the same arguments.
    #[serde(default, rename = "plan_id")]
    pub plan_id: Option<String>,
}

pub(super) fn alter_topic_config(args: AlterTopicConfigArgs) -> ToolResult<Translation> {
    let tool = CompatTool::AlterTopicConfig;
    if args.topic_name.is_empty() {
        return Err(invalid_at(tool, "topicName", "must not be empty"));
    }
    if args.topic_configs.is_empty() {
        return Err(invalid_at(tool, "topicConfigs", "name at least one config"));
    }
    let mut set = BTreeMap::new();
    let mut delete = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in args.topic_configs.into_iter().enumerate() {
        let at = format!("topicConfigs[{i}].name");
        if c.name.is_empty() {
            return Err(invalid_at(tool, &at, "must not be empty"));
        }
        if !seen.insert(c.name.clone()) {
            return Err(invalid_at(
                tool,
                &at,
                format!("{:?} is changed twice", c.name),
            ));
        }
        match c.operation {
            ConfigOperation::Set => {
                set.insert(c.name, c.value);
            }
            ConfigOperation::Delete => delete.push(c.name),
        }
    }
    let native = json!({ "topic": args.topic_name, "set": set, "delete": delete });
    let native = with_plan(native, args.validate_only || args.dry_run, args.plan_id);
    Ok(Translation::new(
        tool,
        vec![Call::new(args.topic_name, native)],
        Shape::AlterTopicConfig,
    )
    .note(ignored_selectors(&[
        ("clusterId", &args.cluster_id),
        ("environmentId", &args.environment_id),
    ])))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeConfigUpdate {
    topic: String,
    changes: Vec<NativeConfigChange>,
    dry_run: bool,
    visible: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeConfigChange {
    name: String,
    before: Option<String>,
    after: Option<String>,
}

pub(super) fn shape_alter_topic_config(native: Value) -> ToolResult<(String, Value)> {
    let plan = plan_of(&native).cloned();
    let update: NativeConfigUpdate = native_result(ToolName::UpdateTopicConfig, native)?;
    let changes: Vec<Value> = update
        .changes
        .iter()
        .map(|c| json!({ "name": c.name, "before": c.before, "after": c.after }))
        .collect();
    let mut structured = json!({
        "topicName": update.topic,
        "changes": changes,
        "validateOnly": update.dry_run,
        "visible": update.visible,
    });
    let body = serde_json::to_string(&json!({ "changes": changes })).unwrap_or_default();
    let text = if update.dry_run {
        let mut text = format!("Validated topic config change (nothing changed): {body}");
        if let Some(id) = plan
            .as_ref()
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
        {
            text.push_str(&format!(
                ". To apply it, call again with the same arguments, without validateOnly, and plan_id {id:?}"
            ));
        }
        structured["plan"] = plan.unwrap_or(Value::Null);
        text
    } else {
        format!("Successfully altered topic config: {body}")
    };
    Ok((text, structured))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetPartitionOffsetsArgs {
    /// Name of the Kafka topic to fetch partition offsets for.
    #[schemars(length(min = 1))]
    pub topic_name: String,
    /// Only this partition (0-indexed); default: every partition.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub partition: Option<i64>,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default, rename = "cluster_id")]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default, rename = "environment_id")]
    pub environment_id: Option<String>,
}

pub(super) fn get_partition_offsets(args: GetPartitionOffsetsArgs) -> ToolResult<Translation> {
    let tool = CompatTool::GetPartitionOffsets;
    if args.topic_name.is_empty() {
        return Err(invalid_at(tool, "topicName", "must not be empty"));
    }
    let mut native = json!({ "topic": args.topic_name });
    if let Some(p) = args.partition {
        native["partition"] = json!(partition(tool, "partition", p)?);
    }
    Ok(Translation::new(
        tool,
        vec![Call::new(args.topic_name, native)],
        Shape::GetPartitionOffsets,
    )
    .note(ignored_selectors(&[
        ("cluster_id", &args.cluster_id),
        ("environment_id", &args.environment_id),
    ])))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeOffsets {
    topic: String,
    partitions: Vec<NativePartitionOffsets>,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativePartitionOffsets {
    partition: i32,
    earliest: i64,
    latest: i64,
}

pub(super) fn shape_get_partition_offsets(native: Value) -> ToolResult<(String, Value)> {
    let offsets: NativeOffsets = native_result(ToolName::FetchOffsets, native)?;
    // Offsets as strings and counts as numbers, as mcp-confluent has them.
    let partitions: Vec<Value> = offsets
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "lowWatermark": p.earliest.to_string(),
                "highWatermark": p.latest.to_string(),
                "messageCount": p.latest - p.earliest,
            })
        })
        .collect();
    let payload = json!({ "topicName": offsets.topic, "partitions": partitions });
    let text = format!(
        "Partition offsets for \"{}\" ({} partition(s)):\n{}",
        offsets.topic,
        partitions.len(),
        serde_json::to_string_pretty(&payload).unwrap_or_default()
    );
    let mut structured = payload;
    if offsets.truncated {
        structured["notes"] = json!([format!(
            "only the first {} partitions are shown (this server's list cap)",
            partitions.len()
        )]);
    }
    Ok((text, structured))
}

#[cfg(test)]
pub(super) mod mirrors {
    //! The native results shaping reads, for the test that their fields
    //! exist in the native tools' output schemas.
    use super::*;

    pub fn schemas() -> Vec<(ToolName, schemars::Schema)> {
        vec![
            (ToolName::ListTopics, schemars::schema_for!(NativeTopicList)),
            (ToolName::CreateTopic, schemars::schema_for!(NativeCreated)),
            (ToolName::DeleteTopic, schemars::schema_for!(NativeDeleted)),
            (
                ToolName::DescribeConfigs,
                schemars::schema_for!(NativeConfigs),
            ),
            (
                ToolName::UpdateTopicConfig,
                schemars::schema_for!(NativeConfigUpdate),
            ),
            (ToolName::FetchOffsets, schemars::schema_for!(NativeOffsets)),
        ]
    }
}
