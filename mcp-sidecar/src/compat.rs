//! mcp-confluent's Kafka tool names and argument shapes, as a translation
//! onto the native tools (`spec.toolNames`). Pure: no Kafka, no MCP types.
//!
//! A compat call is translated into one or more calls of exactly one native
//! tool ([`CompatTool::native`]): that tool's name is the RBAC verb, and each
//! call goes through the server's one call path (policy, fences, plans, caps,
//! audit). The caller runs [`Translation::calls`] in order, stops at the first
//! error, and hands the results to [`Translation::shape`], which answers in
//! the compat tool's shape: mcp-confluent's field names and facts, plus notes
//! where this server does something safer or different (caps, no Schema
//! Registry, a single cluster).
//!
//! The shapes follow `@confluentinc/mcp-confluent` 1.5.0 (its handlers under
//! `dist/confluent/tools/handlers/kafka/`). The snake_case names
//! `get_topic_metadata`, `describe_cluster` and `consumer_groups` are aliases
//! of native tools: the native arguments and answer, under another name.

mod groups;
mod messages;
mod topics;

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::config::Limits;
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::tool_name::ToolName;

/// Most native calls one compat call may make (one per topic of
/// `create-topics`, `delete-topics`, `consume-messages`,
/// `get-consumer-group-lag`): bounds its time, its share of the caller's rate
/// and its audit records.
pub const MAX_CALLS: usize = 20;

macro_rules! compat_tools {
    ($($variant:ident => $name:literal, $native:ident, $desc:literal;)*) => {
        /// A tool name of mcp-confluent (kebab-case) or of a wrapper around it
        /// (snake_case aliases), and the native tool it runs as.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CompatTool { $($variant,)* }

        impl CompatTool {
            pub const ALL: &'static [CompatTool] = &[$(CompatTool::$variant,)*];

            /// The MCP tool name.
            pub const fn as_str(self) -> &'static str {
                match self { $(CompatTool::$variant => $name,)* }
            }

            /// The native tool every call of this compat tool runs as: the
            /// RBAC verb, the policy's and the fences' tool, the audited tool.
            pub const fn native(self) -> ToolName {
                match self { $(CompatTool::$variant => ToolName::$native,)* }
            }

            /// The MCP description.
            pub const fn description(self) -> &'static str {
                match self { $(CompatTool::$variant => $desc,)* }
            }
        }
    };
}

compat_tools! {
    ListTopics => "list-topics", ListTopics,
        "List all topics in the Kafka cluster (mcp-confluent's list-topics). Internal topics included; long lists are paged: pass nextCursor back as cursor.";
    CreateTopics => "create-topics", CreateTopic,
        "Create one or more Kafka topics with a partition count and optional replication factor (mcp-confluent's create-topics). dry_run: true validates and returns one plan per topic; apply with plan_ids in the same order.";
    DeleteTopics => "delete-topics", DeleteTopic,
        "Delete the topics with the given names (mcp-confluent's delete-topics). dry_run: true shows what would be deleted and returns one plan per topic; apply with plan_ids in the same order.";
    ProduceMessage => "produce-message", PublishMessage,
        "Produce one record to a Kafka topic (mcp-confluent's produce-message): a string value is sent as is, anything else JSON-encoded. No Schema Registry serialization and no explicit timestamp on this server. dry_run: true checks without producing.";
    ConsumeMessages => "consume-messages", ConsumeMessages,
        "Read messages from Kafka topics without joining a group or committing (mcp-confluent's consume-messages): per topic an optional partition and start (earliest, latest, {offset}, {timestamp}, {tail}). Capped by this server's message, byte and time limits.";
    GetTopicConfig => "get-topic-config", DescribeConfigs,
        "Retrieve every configuration value of a Kafka topic, defaults included (mcp-confluent's get-topic-config). Sensitive values are never shown.";
    AlterTopicConfig => "alter-topic-config", UpdateTopicConfig,
        "Set or delete (reset to default) individual topic configs (mcp-confluent's alter-topic-config). validateOnly: true (or dry_run: true) validates and returns a plan; apply it with plan_id.";
    ListConsumerGroups => "list-consumer-groups", ListGroups,
        "List consumer groups with their state and protocol type, optionally only those in some states (mcp-confluent's list-consumer-groups).";
    DescribeConsumerGroup => "describe-consumer-group", DescribeGroup,
        "Describe one consumer group: state, protocol, members and their assigned partitions (mcp-confluent's describe-consumer-group).";
    GetConsumerGroupLag => "get-consumer-group-lag", GetConsumerLag,
        "A consumer group's lag per topic and partition (committed offset, high watermark, lag) and in total, optionally for some topics only (mcp-confluent's get-consumer-group-lag).";
    GetPartitionOffsets => "get-partition-offsets", FetchOffsets,
        "Per-partition low and high watermarks and message counts of a topic, optionally one partition (mcp-confluent's get-partition-offsets).";
    GetTopicMetadata => "get_topic_metadata", DescribeTopic,
        "Alias of describe_topic: one topic's partitions (leader, replicas, in-sync replicas, offsets) and non-default configs.";
    DescribeCluster => "describe_cluster", ClusterStatus,
        "Alias of cluster_status: cluster ID, brokers, topic and partition counts, under-replicated and offline partitions.";
    ConsumerGroups => "consumer_groups", ListGroups,
        "Alias of list_groups: consumer groups with their state and protocol type.";
}

impl CompatTool {
    /// Whether this is a snake_case alias: native arguments and answer.
    pub const fn is_alias(self) -> bool {
        matches!(
            self,
            Self::GetTopicMetadata | Self::DescribeCluster | Self::ConsumerGroups
        )
    }

    /// The input JSON schema (draft 2020-12), from Rust types mirroring
    /// mcp-confluent's zod schemas. `None` for an alias: it takes the native
    /// tool's schema.
    pub fn input_schema(self) -> Option<Map<String, Value>> {
        use {groups as g, messages as m, topics as t};
        Some(match self {
            Self::ListTopics => schema::<t::ListTopicsArgs>(),
            Self::CreateTopics => schema::<t::CreateTopicsArgs>(),
            Self::DeleteTopics => schema::<t::DeleteTopicsArgs>(),
            Self::GetTopicConfig => schema::<t::GetTopicConfigArgs>(),
            Self::AlterTopicConfig => schema::<t::AlterTopicConfigArgs>(),
            Self::GetPartitionOffsets => schema::<t::GetPartitionOffsetsArgs>(),
            Self::ProduceMessage => schema::<m::ProduceMessageArgs>(),
            Self::ConsumeMessages => schema::<m::ConsumeMessagesArgs>(),
            Self::ListConsumerGroups => schema::<g::ListConsumerGroupsArgs>(),
            Self::DescribeConsumerGroup => schema::<g::DescribeConsumerGroupArgs>(),
            Self::GetConsumerGroupLag => schema::<g::GetConsumerGroupLagArgs>(),
            Self::GetTopicMetadata | Self::DescribeCluster | Self::ConsumerGroups => return None,
        })
    }

    /// Translates compat arguments into native calls. Bad input is
    /// `INVALID_ARGUMENT` naming the field (`at \`topics[1].numPartitions\``).
    /// `limits` are the server's: counts above them are capped, with a note
    /// in the answer, where mcp-confluent would have no cap at all.
    pub fn translate(self, args: Value, limits: &Limits) -> ToolResult<Translation> {
        let args = if args.is_null() {
            Value::Object(Map::new())
        } else {
            args
        };
        let translation = match self {
            Self::ListTopics => topics::list_topics(crate::tools::decode(self, args)?),
            Self::CreateTopics => topics::create_topics(crate::tools::decode(self, args)?)?,
            Self::DeleteTopics => topics::delete_topics(crate::tools::decode(self, args)?)?,
            Self::GetTopicConfig => topics::get_topic_config(crate::tools::decode(self, args)?)?,
            Self::AlterTopicConfig => {
                topics::alter_topic_config(crate::tools::decode(self, args)?)?
            }
            Self::GetPartitionOffsets => {
                topics::get_partition_offsets(crate::tools::decode(self, args)?)?
            }
            Self::ProduceMessage => messages::produce_message(crate::tools::decode(self, args)?)?,
            Self::ConsumeMessages => {
                messages::consume_messages(crate::tools::decode(self, args)?, limits)?
            }
            Self::ListConsumerGroups => {
                groups::list_consumer_groups(crate::tools::decode(self, args)?)?
            }
            Self::DescribeConsumerGroup => {
                groups::describe_consumer_group(crate::tools::decode(self, args)?)?
            }
            Self::GetConsumerGroupLag => {
                groups::get_consumer_group_lag(crate::tools::decode(self, args)?)?
            }
            // The native tool decodes them (strictly) and names its own fields.
            Self::GetTopicMetadata | Self::DescribeCluster | Self::ConsumerGroups => {
                Translation::new(self, vec![Call::new(String::new(), args)], Shape::Native)
            }
        };
        translation.checked()
    }
}

impl fmt::Display for CompatTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatTool {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

/// One native call of a translation.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    /// What the call is about (a topic, a topic's partition), for an answer
    /// that says which calls failed.
    label: String,
    arguments: Value,
}

impl Call {
    fn new(label: impl Into<String>, arguments: Value) -> Self {
        Self {
            label: label.into(),
            arguments,
        }
    }
}

/// How the native results become the compat answer (with what the shaping
/// needs of the compat arguments).
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// An alias: the native result as is.
    Native,
    ListTopics,
    CreateTopics,
    DeleteTopics,
    GetTopicConfig {
        topic: String,
    },
    AlterTopicConfig,
    GetPartitionOffsets,
    ProduceMessage,
    ConsumeMessages(messages::ConsumeShape),
    ListConsumerGroups(groups::GroupFilter),
    DescribeConsumerGroup,
    GetConsumerGroupLag(groups::LagShape),
}

/// A compat call translated: the native calls to run, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    tool: CompatTool,
    calls: Vec<Call>,
    /// Said in every answer: where this server differs from mcp-confluent
    /// for this call (a cap applied, an argument ignored).
    notes: Vec<String>,
    shape: Shape,
}

/// A compat tool's answer: `text` for the MCP text content (mcp-confluent's
/// wording where agents may parse it), `structured` for structuredContent.
#[derive(Debug, Clone, PartialEq)]
pub struct CompatAnswer {
    pub text: String,
    pub structured: Value,
}

impl Translation {
    fn new(tool: CompatTool, calls: Vec<Call>, shape: Shape) -> Self {
        Self {
            tool,
            calls,
            notes: Vec::new(),
            shape,
        }
    }

    fn note(mut self, note: Option<String>) -> Self {
        self.notes.extend(note);
        self
    }

    fn checked(self) -> ToolResult<Self> {
        let tool = self.tool;
        if self.calls.len() > MAX_CALLS {
            return Err(ToolError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{tool} would make {} calls; this server makes at most {MAX_CALLS} per call: split it",
                    self.calls.len()
                ),
            ));
        }
        Ok(self)
    }

    pub fn tool(&self) -> CompatTool {
        self.tool
    }

    /// The native tool of every call.
    pub fn native(&self) -> ToolName {
        self.tool.native()
    }

    /// The native arguments of each call, in the order to run them. Mutation
    /// calls carry `dry_run` and `plan_id` as the native tool takes them.
    pub fn calls(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.calls.iter().map(|c| &c.arguments)
    }

    /// Shapes the native results (one per call, in order; the run stops at
    /// the first error, so only the last may be one) into the compat answer.
    /// An error of a single call is returned as is; with several calls it
    /// keeps its code and says which calls succeeded and which were not run.
    pub fn shape(&self, results: Vec<ToolResult<Value>>) -> ToolResult<CompatAnswer> {
        let mut done = Vec::with_capacity(results.len());
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(value) => done.push(value),
                Err(e) => return Err(self.partial_failure(i, e)),
            }
        }
        if done.len() != self.calls.len() {
            return Err(internal(format!(
                "{} got {} results for {} calls",
                self.tool,
                done.len(),
                self.calls.len()
            )));
        }
        let (mut text, mut structured) = match &self.shape {
            // An alias answers as its native tool, notes and all.
            Shape::Native => {
                let structured = one(done)?;
                let text = serde_json::to_string(&structured).unwrap_or_default();
                return Ok(CompatAnswer { text, structured });
            }
            Shape::ListTopics => topics::shape_list_topics(one(done)?)?,
            Shape::CreateTopics => topics::shape_create_topics(done)?,
            Shape::DeleteTopics => topics::shape_delete_topics(done)?,
            Shape::GetTopicConfig { topic } => topics::shape_get_topic_config(topic, one(done)?)?,
            Shape::AlterTopicConfig => topics::shape_alter_topic_config(one(done)?)?,
            Shape::GetPartitionOffsets => topics::shape_get_partition_offsets(one(done)?)?,
            Shape::ProduceMessage => messages::shape_produce_message(one(done)?)?,
            Shape::ConsumeMessages(s) => messages::shape_consume_messages(s, done)?,
            Shape::ListConsumerGroups(f) => groups::shape_list_consumer_groups(f, one(done)?)?,
            Shape::DescribeConsumerGroup => groups::shape_describe_consumer_group(one(done)?)?,
            Shape::GetConsumerGroupLag(s) => groups::shape_get_consumer_group_lag(s, done)?,
        };
        let mut notes = self.notes.clone();
        if let Some(Value::Array(more)) = structured.get_mut("notes").map(Value::take) {
            notes.extend(
                more.into_iter()
                    .filter_map(|n| n.as_str().map(String::from)),
            );
        }
        if let Value::Object(map) = &mut structured {
            map.remove("notes");
            if !notes.is_empty() {
                map.insert("notes".into(), json!(notes));
            }
        }
        for note in &notes {
            text.push_str("\nNote: ");
            text.push_str(note);
        }
        Ok(CompatAnswer { text, structured })
    }

    fn partial_failure(&self, failed: usize, e: ToolError) -> ToolError {
        if self.calls.len() == 1 {
            return e;
        }
        let labels = |calls: &[Call]| {
            calls
                .iter()
                .map(|c| c.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (before, rest) = self.calls.split_at(failed.min(self.calls.len()));
        let Some((this, after)) = rest.split_first() else {
            return e;
        };
        let mut message = format!("{}: ", self.tool);
        if !before.is_empty() {
            message.push_str(&format!("succeeded for {}; ", labels(before)));
        }
        message.push_str(&format!("failed for {}: {}", this.label, e.message));
        if !after.is_empty() {
            message.push_str(&format!("; not run for {}", labels(after)));
        }
        ToolError {
            message,
            code: e.code,
            retriable: e.retriable,
        }
    }
}

fn one(mut done: Vec<Value>) -> ToolResult<Value> {
    done.pop()
        .ok_or_else(|| internal("a compat call got no native result".into()))
}

fn internal(message: String) -> ToolError {
    ToolError::new(ErrorCode::Internal, message)
}

/// Made as the native tools' schemas are (standard formats only).
fn schema<T: JsonSchema>() -> Map<String, Value> {
    std::sync::Arc::unwrap_or_clone(crate::tools::schema::<T>())
}

/// Bad input found after decoding, named like decoding errors are.
fn invalid_at(tool: CompatTool, path: &str, problem: impl fmt::Display) -> ToolError {
    ToolError::invalid(format!(
        "invalid arguments for {tool} at `{path}`: {problem}"
    ))
}

/// A note for Confluent Cloud selectors a caller passed: this server serves
/// one cluster, so they select nothing.
fn ignored_selectors(given: &[(&str, &Option<String>)]) -> Option<String> {
    let named: Vec<&str> = given
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(name, _)| *name)
        .collect();
    (!named.is_empty()).then(|| {
        format!(
            "{} ignored: this server serves one Kafka cluster (see describe_cluster)",
            named.join(" and ")
        )
    })
}

/// `dry_run` and `plan_id` as a native mutation takes them (absent when
/// unset, so the arguments a plan is bound to are the same in both phases).
fn with_plan(mut arguments: Value, dry_run: bool, plan_id: Option<String>) -> Value {
    if let Value::Object(map) = &mut arguments {
        if dry_run {
            map.insert("dry_run".into(), Value::Bool(true));
        }
        if let Some(id) = plan_id {
            map.insert(crate::plan::PLAN_ID_ARG.into(), Value::String(id));
        }
    }
    arguments
}

/// The plan id of each of `count` calls: `plan_id` for a single call,
/// `plan_ids` (one per call, in order) for several.
fn plan_ids_per_call(
    tool: CompatTool,
    count: usize,
    plan_id: Option<String>,
    plan_ids: Option<Vec<String>>,
) -> ToolResult<Vec<Option<String>>> {
    match (plan_id, plan_ids) {
        (Some(_), Some(_)) => Err(invalid_at(
            tool,
            "plan_ids",
            "give plan_id or plan_ids, not both",
        )),
        (Some(id), None) if count == 1 => Ok(vec![Some(id)]),
        (Some(_), None) => Err(invalid_at(
            tool,
            "plan_id",
            format!("this call makes {count} changes: give plan_ids, one per topic in order"),
        )),
        (None, Some(ids)) if ids.len() == count => Ok(ids.into_iter().map(Some).collect()),
        (None, Some(ids)) => Err(invalid_at(
            tool,
            "plan_ids",
            format!(
                "{} plan ids for {count} topics: give one per topic, in the order of the dry run",
                ids.len()
            ),
        )),
        (None, None) => Ok(vec![None; count]),
    }
}

/// The plan a native dry run returned (`plan: {id, expires_at}`), if any.
fn plan_of(native: &Value) -> Option<&Value> {
    native.get(crate::plan::PLAN_FIELD).filter(|p| !p.is_null())
}

/// Decodes a native tool's structured result into the fields shaping reads
/// (a mismatch is a bug of this server, not of the caller).
fn native_result<T: DeserializeOwned>(tool: ToolName, value: Value) -> ToolResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        internal(format!(
            "unexpected {tool} result at `{path}`: {}",
            e.into_inner()
        ))
    })
}

/// JavaScript's `Date.prototype.toISOString` of a time in milliseconds
/// since the epoch, as mcp-confluent shows record timestamps.
fn iso_millis(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests;
