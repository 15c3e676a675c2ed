//! Message tools: produce-message and consume-messages.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::topics::partition;
use super::{
    Call, CompatTool, Shape, Translation, ignored_selectors, invalid_at, iso_millis, native_result,
    plan_of, with_plan,
};
use crate::config::Limits;
use crate::error::ToolResult;
use crate::tool_name::ToolName;

/// A payload: a string is sent as is, anything else JSON-encoded.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MessagePayload {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
    Object(serde_json::Map<String, Value>),
}

impl MessagePayload {
    /// mcp-confluent's rule without Schema Registry: a string raw, anything
    /// else `JSON.stringify`-ed.
    fn into_text(self) -> String {
        match self {
            Self::Text(s) => s,
            Self::Number(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
            Self::Object(map) => Value::Object(map).to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    Avro,
    Json,
    Protobuf,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemaIdLocation {
    Payload,
    Header,
}

/// The key or value of a record. The Schema Registry fields are accepted so
/// that mcp-confluent calls decode (it ignores them too without
/// `useSchemaRegistry`), but this server does not serialize with a registry:
/// `useSchemaRegistry: true` is refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MessageOptions {
    /// The payload: a string is sent raw, anything else JSON-encoded.
    pub message: MessagePayload,
    /// Must be false here (no Schema Registry serialization).
    #[serde(default)]
    pub use_schema_registry: bool,
    #[serde(default)]
    pub schema_type: Option<SchemaType>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub message_name: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub normalize: Option<bool>,
    #[serde(default)]
    pub schema_id_location: Option<SchemaIdLocation>,
}

/// A time: an ISO 8601 date-time with an offset, or milliseconds since the epoch.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TimeArg {
    Iso(String),
    Millis(i64),
}

/// A header's value: one string, or several (a repeated header).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProduceMessageArgs {
    /// Name of the Kafka topic to produce the message to.
    #[schemars(length(min = 1))]
    pub topic_name: String,
    pub value: MessageOptions,
    #[serde(default)]
    pub key: Option<MessageOptions>,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default, rename = "cluster_id")]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default, rename = "environment_id")]
    pub environment_id: Option<String>,
    /// Target partition; default: by the key's hash.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub partition: Option<i64>,
    /// Not supported here: the record gets the producer's time.
    #[serde(default)]
    pub timestamp: Option<TimeArg>,
    /// Record headers, name to value (one value per name here).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, HeaderValue>>,
    /// Check topic, partition and size without producing; returns a plan.
    #[serde(default, rename = "dry_run")]
    pub dry_run: bool,
    /// Produce as the plan a dry run returned, with the same arguments.
    #[serde(default, rename = "plan_id")]
    pub plan_id: Option<String>,
}

fn payload_text(tool: CompatTool, side: &str, options: MessageOptions) -> ToolResult<String> {
    if options.use_schema_registry {
        return Err(invalid_at(
            tool,
            &format!("{side}.useSchemaRegistry"),
            "this server does not serialize with Schema Registry: send the payload as a string or JSON",
        ));
    }
    Ok(options.message.into_text())
}

pub(super) fn produce_message(args: ProduceMessageArgs) -> ToolResult<Translation> {
    let tool = CompatTool::ProduceMessage;
    if args.topic_name.is_empty() {
        return Err(invalid_at(tool, "topicName", "must not be empty"));
    }
    if args.timestamp.is_some() {
        return Err(invalid_at(
            tool,
            "timestamp",
            "this server does not set record timestamps: leave it out and the record gets the producer's time",
        ));
    }
    let mut native = json!({
        "topic": args.topic_name,
        "value": payload_text(tool, "value", args.value)?,
    });
    if let Some(key) = args.key {
        native["key"] = json!(payload_text(tool, "key", key)?);
    }
    let mut headers = BTreeMap::new();
    for (name, value) in args.headers.unwrap_or_default() {
        match value {
            HeaderValue::One(v) => {
                headers.insert(name, v);
            }
            HeaderValue::Many(mut values) if values.len() <= 1 => {
                if let Some(v) = values.pop() {
                    headers.insert(name, v);
                }
            }
            HeaderValue::Many(_) => {
                return Err(invalid_at(
                    tool,
                    &format!("headers.{name}"),
                    "this server sends one value per header name",
                ));
            }
        }
    }
    if !headers.is_empty() {
        native["headers"] = json!(headers);
    }
    if let Some(p) = args.partition {
        native["partition"] = json!(partition(tool, "partition", p)?);
    }
    let label = args.topic_name.clone();
    let native = with_plan(native, args.dry_run, args.plan_id);
    Ok(
        Translation::new(tool, vec![Call::new(label, native)], Shape::ProduceMessage).note(
            ignored_selectors(&[
                ("cluster_id", &args.cluster_id),
                ("environment_id", &args.environment_id),
            ]),
        ),
    )
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativePublished {
    topic: String,
    partition: Option<i32>,
    offset: Option<i64>,
    bytes: usize,
    dry_run: bool,
}

pub(super) fn shape_produce_message(native: Value) -> ToolResult<(String, Value)> {
    let plan = plan_of(&native).cloned();
    let sent: NativePublished = native_result(ToolName::PublishMessage, native)?;
    let partition = sent
        .partition
        .map_or_else(|| "any".to_string(), |p| p.to_string());
    let mut structured = json!({
        "topicName": sent.topic,
        "partition": sent.partition,
        "offset": sent.offset.map(|o| o.to_string()),
        "bytes": sent.bytes,
    });
    if !sent.dry_run {
        let offset = sent.offset.map_or_else(String::new, |o| o.to_string());
        let text = format!(
            "Message produced successfully to [Topic: {}, Partition: {partition}, Offset: {offset}]",
            sent.topic
        );
        return Ok((text, structured));
    }
    let mut text = format!(
        "Dry run, nothing produced: a {}-byte record to [Topic: {}, Partition: {partition}] is accepted",
        sent.bytes, sent.topic
    );
    if let Some(id) = plan
        .as_ref()
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
    {
        text.push_str(&format!(
            ". To produce it, call again with the same arguments, without dry_run, and plan_id {id:?}"
        ));
    }
    structured["dryRun"] = json!(true);
    structured["plan"] = plan.unwrap_or(Value::Null);
    Ok((text, structured))
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// The oldest retained message.
    Earliest,
    /// Here: the newest messages already written (this server does not wait
    /// for new ones).
    Latest,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetStart {
    /// Absolute offset within the partition, as a digit-only string.
    #[schemars(regex(pattern = r"^\d+$"))]
    pub offset: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimestampStart {
    /// ISO 8601 with an offset (e.g. "2026-05-14T17:00:00Z") or milliseconds since the epoch.
    pub timestamp: TimeArg,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TailStart {
    /// The last N messages already written to the partition (needs `partition`).
    #[schemars(range(min = 1))]
    pub tail: i64,
}

/// Where to begin reading a topic.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Start {
    Position(Position),
    Offset(OffsetStart),
    Timestamp(TimestampStart),
    Tail(TailStart),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConsume {
    /// Kafka topic name to consume from.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Only this partition (0-indexed); default: every partition.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub partition: Option<i64>,
    /// Where to begin; default "earliest".
    #[serde(default)]
    pub start: Option<Start>,
}

/// Schema Registry decoding options: accepted, but this server shows
/// payloads as JSON, UTF-8 text or base64 without a registry (so there is
/// no decoding to disable).
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Format {
    #[serde(default)]
    pub disable_schema_registry: bool,
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumeMessagesArgs {
    /// Topics to read, each at least `name` (at most one entry per topic
    /// without a partition, or one per partition).
    #[schemars(length(min = 1))]
    pub topics: Vec<TopicConsume>,
    /// Most messages to return in all (default 10; this server caps it).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_messages: Option<i64>,
    /// Longest to wait for messages, per topic entry (this server caps it).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub value_format: Option<Format>,
    #[serde(default)]
    pub key_format: Option<Format>,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default, rename = "cluster_id")]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default, rename = "environment_id")]
    pub environment_id: Option<String>,
}

/// What shaping the answer needs of a consume call.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConsumeShape {
    max_messages: usize,
    /// Each call's topic and partition.
    entries: Vec<(String, Option<i32>)>,
}

/// A caller's count, capped at the server's limit with a note saying so.
fn capped(
    tool: CompatTool,
    field: &str,
    asked: i64,
    cap: u64,
    notes: &mut Vec<String>,
) -> ToolResult<u64> {
    let Ok(asked) = u64::try_from(asked) else {
        return Err(invalid_at(tool, field, "must be a positive integer"));
    };
    if asked == 0 {
        return Err(invalid_at(tool, field, "must be a positive integer"));
    }
    if asked > cap {
        notes.push(format!(
            "{field} {asked} was capped to this server's limit of {cap}"
        ));
        return Ok(cap);
    }
    Ok(asked)
}

/// The milliseconds of an ISO 8601 time with an offset, or of a number.
fn millis(tool: CompatTool, path: &str, time: TimeArg) -> ToolResult<i64> {
    let ms = match time {
        TimeArg::Millis(ms) => ms,
        TimeArg::Iso(text) => text
            .parse::<jiff::Timestamp>()
            .map_err(|e| {
                invalid_at(
                    tool,
                    path,
                    format!("{text:?} is not an ISO 8601 time with an offset: {e}"),
                )
            })?
            .as_millisecond(),
    };
    if ms < 0 {
        return Err(invalid_at(tool, path, "must not be before 1970"));
    }
    Ok(ms)
}

/// mcp-confluent's rules for the entries of one topic: all with a
/// partition or none; one unrestricted entry; each partition once.
fn check_entries(tool: CompatTool, entries: &[(String, Option<i32>)]) -> ToolResult<()> {
    let mut seen = BTreeSet::new();
    let mut restricted: BTreeMap<&str, bool> = BTreeMap::new();
    for (i, (topic, partition)) in entries.iter().enumerate() {
        if *restricted.entry(topic).or_insert(partition.is_some()) != partition.is_some() {
            return Err(invalid_at(
                tool,
                &format!("topics[{i}].partition"),
                format!(
                    "topic {topic:?} mixes entries with and without a partition: give every entry a partition, or use one entry"
                ),
            ));
        }
        if !seen.insert((topic, partition)) {
            let what = partition.map_or_else(String::new, |p| format!(" partition {p}"));
            return Err(invalid_at(
                tool,
                &format!("topics[{i}]"),
                format!("topic {topic:?}{what} is named twice"),
            ));
        }
    }
    Ok(())
}

pub(super) fn consume_messages(
    args: ConsumeMessagesArgs,
    limits: &Limits,
) -> ToolResult<Translation> {
    let tool = CompatTool::ConsumeMessages;
    if args.topics.is_empty() {
        return Err(invalid_at(tool, "topics", "name at least one topic"));
    }
    let mut notes = Vec::new();
    // mcp-confluent has no upper bound on either; this server's caps apply.
    let max_messages = capped(
        tool,
        "maxMessages",
        args.max_messages.unwrap_or(10),
        limits.max_consume_messages as u64,
        &mut notes,
    )?;
    let timeout_ms = args
        .timeout_ms
        .map(|t| {
            capped(
                tool,
                "timeoutMs",
                t,
                limits.max_consume_timeout_ms,
                &mut notes,
            )
        })
        .transpose()?;
    let mut entries = Vec::new();
    for (i, entry) in args.topics.iter().enumerate() {
        if entry.name.is_empty() {
            return Err(invalid_at(
                tool,
                &format!("topics[{i}].name"),
                "must not be empty",
            ));
        }
        let p = entry
            .partition
            .map(|p| partition(tool, &format!("topics[{i}].partition"), p))
            .transpose()?;
        entries.push((entry.name.clone(), p));
    }
    check_entries(tool, &entries)?;
    let mut said_latest = false;
    let mut calls = Vec::new();
    for (i, (entry, (topic, p))) in args.topics.into_iter().zip(&entries).enumerate() {
        let at = |field: &str| format!("topics[{i}].{field}");
        let needs_partition = |what: &str| {
            if p.is_none() {
                Err(invalid_at(
                    tool,
                    &at("partition"),
                    format!("a start at {what} is per partition: give a partition"),
                ))
            } else {
                Ok(())
            }
        };
        let mut native = json!({ "topic": topic, "max_messages": max_messages });
        if let Some(p) = p {
            native["partition"] = json!(p);
        }
        match entry.start {
            None | Some(Start::Position(Position::Earliest)) => native["from"] = json!("earliest"),
            Some(Start::Position(Position::Latest)) => {
                native["from"] = json!("latest");
                if !said_latest {
                    said_latest = true;
                    notes.push("start \"latest\" reads the newest messages already written (up to maxMessages per partition); this server does not wait for new ones".into());
                }
            }
            Some(Start::Offset(OffsetStart { offset })) => {
                needs_partition("an offset")?;
                let valid = !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit());
                let offset: i64 = offset.parse().ok().filter(|_| valid).ok_or_else(|| {
                    invalid_at(
                        tool,
                        &at("start.offset"),
                        format!("{offset:?} is not a non-negative integer (digit-only string)"),
                    )
                })?;
                native["from"] = json!("offset");
                native["offset"] = json!(offset);
            }
            Some(Start::Timestamp(TimestampStart { timestamp })) => {
                native["from"] = json!("timestamp");
                native["timestamp_ms"] = json!(millis(tool, &at("start.timestamp"), timestamp)?);
            }
            Some(Start::Tail(TailStart { tail })) => {
                needs_partition("the tail")?;
                if tail < 1 {
                    return Err(invalid_at(
                        tool,
                        &at("start.tail"),
                        "must be a positive integer",
                    ));
                }
                // The native peek from the latest reads the newest
                // max_messages: the tail, at most as many as may be returned.
                native["from"] = json!("latest");
                native["max_messages"] = json!(max_messages.min(tail as u64));
            }
        }
        if let Some(t) = timeout_ms {
            native["timeout_ms"] = json!(t);
        }
        let label = p.map_or_else(|| topic.clone(), |p| format!("{topic} partition {p}"));
        calls.push(Call::new(label, native));
    }
    for (side, format) in [
        ("valueFormat", &args.value_format),
        ("keyFormat", &args.key_format),
    ] {
        if format.as_ref().is_some_and(|f| f.subject.is_some()) {
            notes.push(format!(
                "{side}.subject ignored: this server shows payloads as JSON, text or base64, without Schema Registry"
            ));
        }
    }
    let shape = ConsumeShape {
        max_messages: max_messages as usize,
        entries,
    };
    let mut translation = Translation::new(tool, calls, Shape::ConsumeMessages(shape));
    translation.notes = notes;
    Ok(translation.note(ignored_selectors(&[
        ("cluster_id", &args.cluster_id),
        ("environment_id", &args.environment_id),
    ])))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeMessages {
    topic: String,
    messages: Vec<NativeMessage>,
    stopped_by: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeMessage {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<NativePayload>,
    value: Option<NativePayload>,
    headers: BTreeMap<String, Option<NativePayload>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
enum NativePayload {
    Json(Value),
    Text(String),
    Base64(String),
}

impl NativePayload {
    /// The payload as mcp-confluent's string, and whether it is base64
    /// (bytes that are not UTF-8, which mcp-confluent would mangle).
    fn into_text(self) -> (String, bool) {
        match self {
            Self::Json(v) => (v.to_string(), false),
            Self::Text(s) => (s, false),
            Self::Base64(b) => (b, true),
        }
    }
}

fn compat_message(topic: &str, m: NativeMessage) -> Value {
    let mut out = serde_json::Map::new();
    for (field, payload) in [("key", m.key), ("value", m.value)] {
        let (text, base64) = payload.map_or((None, false), |p| {
            let (t, b) = p.into_text();
            (Some(t), b)
        });
        out.insert(field.into(), json!(text));
        if base64 {
            out.insert(format!("{field}Encoding"), json!("base64"));
        }
    }
    let timestamp = m
        .timestamp_ms
        .and_then(iso_millis)
        .unwrap_or_else(|| "(no timestamp)".into());
    out.insert("timestamp".into(), json!(timestamp));
    out.insert("offset".into(), json!(m.offset.to_string()));
    if !m.headers.is_empty() {
        let mut headers = serde_json::Map::new();
        let mut encodings = serde_json::Map::new();
        for (name, value) in m.headers {
            let value = value.map(|v| {
                let (text, base64) = v.into_text();
                if base64 {
                    encodings.insert(name.clone(), json!("base64"));
                }
                text
            });
            headers.insert(name, json!(value));
        }
        out.insert("headers".into(), Value::Object(headers));
        if !encodings.is_empty() {
            out.insert("headerEncodings".into(), Value::Object(encodings));
        }
    }
    out.insert("topic".into(), json!(topic));
    out.insert("partition".into(), json!(m.partition));
    Value::Object(out)
}

pub(super) fn shape_consume_messages(
    shape: &ConsumeShape,
    done: Vec<Value>,
) -> ToolResult<(String, Value)> {
    let mut messages = Vec::new();
    let mut topics = Vec::new();
    let mut notes = Vec::new();
    for (native, (topic, partition)) in done.into_iter().zip(&shape.entries) {
        let read: NativeMessages = native_result(ToolName::ConsumeMessages, native)?;
        if read.stopped_by == "max_bytes" {
            notes.push(format!(
                "reading {topic} stopped at this server's byte cap on keys and values: ask for fewer messages or start later"
            ));
        }
        let mut entry = json!({ "name": topic, "stoppedBy": read.stopped_by });
        if let Some(p) = partition {
            entry["partition"] = json!(p);
        }
        topics.push(entry);
        messages.extend(
            read.messages
                .into_iter()
                .map(|m| compat_message(&read.topic, m)),
        );
    }
    // maxMessages bounds the whole answer, as in mcp-confluent.
    if messages.len() > shape.max_messages {
        notes.push(format!(
            "{} more messages were read than maxMessages {} allows in all, and left out",
            messages.len() - shape.max_messages,
            shape.max_messages
        ));
        messages.truncate(shape.max_messages);
    }
    let mut names: Vec<&str> = Vec::new();
    for (topic, _) in &shape.entries {
        if !names.contains(&topic.as_str()) {
            names.push(topic);
        }
    }
    let text = format!(
        "Consumed {} messages from topics {}.\nConsumed messages: {}",
        messages.len(),
        names.join(", "),
        serde_json::to_string_pretty(&messages).unwrap_or_default()
    );
    let structured = json!({
        "consumed": messages.len(),
        "topics": topics,
        "messages": messages,
        "notes": notes,
    });
    Ok((text, structured))
}

#[cfg(test)]
pub(super) mod mirrors {
    use super::*;

    pub fn schemas() -> Vec<(ToolName, schemars::Schema)> {
        vec![
            (
                ToolName::PublishMessage,
                schemars::schema_for!(NativePublished),
            ),
            (
                ToolName::ConsumeMessages,
                schemars::schema_for!(NativeMessages),
            ),
        ]
    }
}
