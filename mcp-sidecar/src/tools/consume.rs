//! `consume_messages`: a bounded peek. A pooled consumer is assigned the
//! start offsets (no group join; from the latest or an offset, it looks up
//! the log's start and end first), reads until a cap or each partition's end
//! (the one looked up, else where its fetches find it), and is unassigned
//! without committing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::observe::{Freshness, offsets_for_timestamp, select_partitions};
use super::{ToolContext, validate};
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::kafka::{BlockingKafka, PeekConsumer, PeekingConsumer};
use crate::schema::{Decoded, PeekDecoder, SchemaRegistry, WireSchema};
use crate::scope::Scope;

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained message.
    Earliest,
    /// The newest `max_messages` messages of each partition.
    #[default]
    Latest,
    /// `offset` (needs `partition`).
    Offset,
    /// The first message at or after `timestamp_ms`.
    Timestamp,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumeArgs {
    pub topic: String,
    /// One partition (default: all).
    #[serde(default)]
    pub partition: Option<i32>,
    #[serde(default)]
    pub from: StartFrom,
    #[serde(default)]
    pub offset: Option<i64>,
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
    /// Most messages to return (small default; the server caps it).
    #[serde(default)]
    pub max_messages: Option<usize>,
    /// Most bytes of keys and values to return (the server caps it).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Longest to wait for messages, in milliseconds (the server caps it).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Messages {
    pub topic: String,
    pub messages: Vec<ConsumedMessage>,
    /// Why reading stopped: `end` (reached every partition's end: the
    /// latest offset seen at the start when reading from the latest or an
    /// offset, else the end as reading found it; or the last committed
    /// message before it), `max_messages`, `max_bytes` or `timeout`.
    pub stopped_by: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConsumedMessage {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the message has a timestamp.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Payload>,
    pub value: Option<Payload>,
    pub headers: BTreeMap<String, Option<Payload>>,
    /// The key's schema, when it was decoded with one from the schema
    /// registry (Confluent's wire format); `key` is then its JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_schema: Option<WireSchema>,
    /// The same for the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_schema: Option<WireSchema>,
    /// Why a key or value is shown as its bytes although this server has a
    /// schema registry (not in the wire format, an unknown schema id, the
    /// registry unreachable...).
    // `default` so that the output schema says it may be absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The key and value as read, while they may still be decoded.
    #[serde(skip)]
    #[schemars(skip)]
    raw: Option<RawKeyValue>,
}

/// A message's key and value bytes, as read.
type RawKeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Bytes shown the most readable way that is exact.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    Json(serde_json::Value),
    Text(String),
    Base64(String),
}

impl Payload {
    pub fn decode(bytes: &[u8]) -> Payload {
        match std::str::from_utf8(bytes) {
            Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)))
                    if numbers_are_exact(&v) =>
                {
                    Payload::Json(v)
                }
                _ => Payload::Text(text.to_string()),
            },
            Err(_) => Payload::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

/// Whether every number survived parsing: an integer beyond 64 bits is
/// parsed as a float that no longer equals it, so such a payload stays text.
pub fn numbers_are_exact(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.fract() != 0.0 || f.abs() < 9_007_199_254_740_992.0)
        }
        serde_json::Value::Array(items) => items.iter().all(numbers_are_exact),
        serde_json::Value::Object(map) => map.values().all(numbers_are_exact),
        _ => true,
    }
}

pub async fn consume_messages(ctx: &ToolContext, args: ConsumeArgs) -> ToolResult<Messages> {
    validate::topic_name(&args.topic)?;
    let l = &ctx.limits;
    let max_messages = validate::capped(
        "max_messages",
        args.max_messages,
        l.default_consume_messages,
        l.max_consume_messages,
    )?;
    let max_bytes = validate::capped(
        "max_bytes",
        args.max_bytes,
        l.default_consume_bytes,
        l.max_consume_bytes,
    )?;
    let timeout_ms = args.timeout_ms.unwrap_or(2_000);
    if timeout_ms == 0 || timeout_ms > l.max_consume_timeout_ms {
        return Err(ToolError::new(
            ErrorCode::LimitExceeded,
            format!(
                "timeout_ms must be between 1 and this server's limit of {}",
                l.max_consume_timeout_ms
            ),
        ));
    }
    match (args.from, args.partition, args.offset, args.timestamp_ms) {
        (StartFrom::Offset, None, _, _) => {
            return Err(ToolError::invalid("from: offset needs partition"));
        }
        (StartFrom::Offset, _, None, _) => {
            return Err(ToolError::invalid("from: offset needs offset"));
        }
        (StartFrom::Offset, _, Some(o), _) if o < 0 => {
            return Err(ToolError::invalid("offset must not be negative"));
        }
        (StartFrom::Timestamp, _, _, None) => {
            return Err(ToolError::invalid("from: timestamp needs timestamp_ms"));
        }
        _ => {}
    }
    // Wait for a peek consumer at most as long as the peek may take.
    let timeout = Duration::from_millis(timeout_ms);
    let keep_raw = ctx.schema_registry.is_some();
    let read = ctx
        .kafka
        .peek(timeout, move |k, consumer| {
            let plan = plan_peek(k, consumer, args, max_messages)?;
            read_peek(consumer, plan, max_messages, max_bytes, timeout, keep_raw)
        })
        .await?;
    match &ctx.schema_registry {
        Some(registry) => Ok(decode_peek(registry, ctx.scope.as_deref(), read, max_bytes).await),
        None => Ok(read),
    }
}

/// Decodes the keys and values of a peek that are in Confluent's wire
/// format with their writers' schemas; the others keep today's display,
/// with a note saying why. The byte cap then counts the decoded JSON's
/// length for what was decoded: messages past it are left out (they were
/// read, never committed), and the answer says it stopped by max_bytes.
async fn decode_peek(
    registry: &SchemaRegistry,
    scope: Option<&Scope>,
    mut read: Messages,
    max_bytes: usize,
) -> Messages {
    let visible = |subject: &str| super::schemas::subject_visible(scope, subject);
    let topic = read.topic.clone();
    let mut decoder = PeekDecoder::new(registry, &topic, &visible);
    let mut bytes = 0usize;
    let mut kept = 0;
    for message in &mut read.messages {
        let Some((key, value)) = message.raw.take() else {
            continue;
        };
        let mut size = 0;
        for (which, raw, shown, schema) in [
            ("key", key, &mut message.key, &mut message.key_schema),
            (
                "value",
                value,
                &mut message.value,
                &mut message.value_schema,
            ),
        ] {
            let Some(raw) = raw else { continue };
            match decoder.decode(which, &raw).await {
                Decoded::Value(json, with) => {
                    size += serde_json::to_string(&json).map_or(raw.len(), |t| t.len());
                    *shown = Some(Payload::Json(json));
                    *schema = Some(with);
                }
                Decoded::Fallback(why) => {
                    size += raw.len();
                    message.notes.push(format!("{which}: {why}"));
                }
            }
        }
        if bytes + size > max_bytes {
            read.stopped_by = "max_bytes".to_string();
            break;
        }
        bytes += size;
        kept += 1;
    }
    read.messages.truncate(kept);
    read
}

/// What a peek reads: per partition, the first offset it may show (0 where
/// the consumer starts at the log start) and where it ends: the end offset
/// looked up at the start, or None, the end as its fetches find it.
/// Partitions known to hold nothing to read are left out.
struct PeekPlan {
    topic: String,
    assignment: TopicPartitionList,
    next_offset: HashMap<i32, i64>,
    ends: HashMap<i32, Option<i64>>,
}

/// Looks up only what the start needs. From the earliest offsets, nothing:
/// the consumer knows the log start from its last fetch of the partition
/// (else asks for it itself), and a start that retention has since deleted
/// is reset to the new log start (`auto.offset.reset`). From a time, the
/// offsets at that time. From the latest and from an offset, the log start
/// and end (the start is counted back from the end, or clamped to both),
/// asked on the peek's own consumer (its connection is idle until it
/// reads; the shared lookup connection answers one request at a time, and
/// concurrent peeks queued on it).
fn plan_peek(
    k: &BlockingKafka,
    consumer: &PeekingConsumer,
    args: ConsumeArgs,
    max_messages: usize,
) -> ToolResult<PeekPlan> {
    let partitions = select_partitions(k, &args.topic, args.partition, Freshness::Cached)?;
    // Per partition: the first offset it may show, where the consumer
    // starts, and the end looked up.
    let starts: Vec<(i32, i64, Offset, Option<i64>)> = match args.from {
        StartFrom::Earliest => partitions
            .iter()
            .map(|&p| (p, 0, Offset::Beginning, None))
            .collect(),
        // An offset found by time is one the log holds; a partition with
        // nothing at or after the time has none.
        StartFrom::Timestamp => {
            offsets_for_timestamp(k, &args.topic, &partitions, args.timestamp_ms.unwrap_or(0))?
                .into_iter()
                .map(|(p, at)| (p, at, Offset::Offset(at), None))
                .collect()
        }
        StartFrom::Latest | StartFrom::Offset => {
            let lows = k.offsets_via(consumer, &args.topic, &partitions, Offset::Beginning)?;
            let mut starts = Vec::new();
            for (p, high) in k.offsets_via(consumer, &args.topic, &partitions, Offset::End)? {
                let low = lows.get(&p).copied().unwrap_or(0);
                let first = match args.from {
                    StartFrom::Latest => (high - max_messages as i64).max(low),
                    _ => args.offset.unwrap_or(low).clamp(low, high),
                };
                if first < high {
                    starts.push((p, first, Offset::Offset(first), Some(high)));
                }
            }
            starts
        }
    };
    let (mut assignment, mut next_offset, mut ends) =
        (TopicPartitionList::new(), HashMap::new(), HashMap::new());
    for (p, first, start, end) in starts {
        next_offset.insert(p, first);
        ends.insert(p, end);
        assignment
            .add_partition_offset(&args.topic, p, start)
            .map_err(|e| ToolError::from_kafka("preparing the assignment", &e))?;
    }
    Ok(PeekPlan {
        topic: args.topic,
        assignment,
        next_offset,
        ends,
    })
}

/// Reads a planned peek on a pooled consumer (the caller holds a peek slot).
fn read_peek(
    consumer: &PeekConsumer,
    plan: PeekPlan,
    max_messages: usize,
    max_bytes: usize,
    timeout: Duration,
    keep_raw: bool,
) -> ToolResult<Messages> {
    let PeekPlan {
        topic,
        assignment,
        mut next_offset,
        mut ends,
    } = plan;
    let mut messages = Vec::new();
    let mut stopped_by = "end";
    if ends.is_empty() {
        return Ok(Messages {
            topic,
            messages,
            stopped_by: stopped_by.to_string(),
        });
    }
    let topic_c = std::ffi::CString::new(topic.as_str())
        .map_err(|_| ToolError::invalid("topic must not contain a NUL byte"))?;
    consumer
        .assign(&assignment)
        .map_err(|e| ToolError::from_kafka("assigning partitions", &e))?;
    let deadline = Instant::now() + timeout;
    let mut bytes = 0usize;
    'read: while !ends.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            stopped_by = "timeout";
            break;
        }
        let msg = match consumer.poll(left.min(Duration::from_millis(200))) {
            None => continue,
            Some(Ok(msg)) => msg,
            // A fetch at the partition's end (the last stable offset under
            // read_committed): how a peek without an end looked up ends an
            // empty partition, and how any peek ends where transaction
            // markers or aborted records take the offsets before the end
            // (they are never delivered, so waiting for that end would wait
            // out the timeout).
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
                continue;
            }
            // The peek consumers' group exists only because librdkafka
            // assigns partitions through one; a peek never joins it,
            // commits or reads its offsets. A principal whose ACLs do not
            // cover it is refused the group's coordinator, which
            // librdkafka reports once on the consumer's queue: not this
            // peek's error (the topic's own refusals come from its
            // metadata and offsets, looked up before).
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::GroupAuthorizationFailed,
            ))) => {
                continue;
            }
            Some(Err(e)) => {
                return Err(ToolError::from_kafka(
                    &format!("reading messages of topic {topic:?}"),
                    &e,
                ));
            }
        };
        let (p, offset) = (msg.partition(), msg.offset());
        // Only what this peek assigned, in order, once (a reused
        // consumer must not show what an earlier peek fetched).
        let Some(&end) = ends.get(&p) else { continue };
        if msg.topic() != topic || next_offset.get(&p).is_none_or(|n| offset < *n) {
            continue;
        }
        next_offset.insert(p, offset + 1);
        let size = msg.key().map_or(0, <[u8]>::len) + msg.payload().map_or(0, <[u8]>::len);
        if bytes + size > max_bytes {
            stopped_by = "max_bytes";
            break 'read;
        }
        bytes += size;
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(Payload::decode)))
                    .collect()
            })
            .unwrap_or_default();
        messages.push(ConsumedMessage {
            partition: p,
            offset,
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key().map(Payload::decode),
            value: msg.payload().map(Payload::decode),
            headers,
            key_schema: None,
            value_schema: None,
            notes: Vec::new(),
            raw: keep_raw.then(|| {
                (
                    msg.key().map(<[u8]>::to_vec),
                    msg.payload().map(<[u8]>::to_vec),
                )
            }),
        });
        // The last message before the end: the one looked up, else the high
        // watermark the fetch that brought this message found (without it,
        // the peek would learn of the end from one more fetch, which the
        // broker holds for fetch.wait.max.ms).
        if end
            .or_else(|| consumer.fetched_high_watermark(&topic_c, p))
            .is_some_and(|end| offset + 1 >= end)
        {
            ends.remove(&p);
        }
        if messages.len() >= max_messages {
            stopped_by = if ends.is_empty() {
                "end"
            } else {
                "max_messages"
            };
            break;
        }
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    Ok(Messages {
        topic,
        messages,
        stopped_by: stopped_by.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_schemas_or_notes_fits_the_output_schema() {
        // Fields left out when empty must not be required: a client that
        // checks structured content against the schema would refuse every
        // plain message.
        let schema = serde_json::to_value(schemars::schema_for!(ConsumedMessage)).unwrap();
        let plain = ConsumedMessage {
            partition: 0,
            offset: 1,
            timestamp_ms: None,
            key: None,
            value: Some(Payload::Text("x".into())),
            headers: BTreeMap::new(),
            key_schema: None,
            value_schema: None,
            notes: Vec::new(),
            raw: None,
        };
        let shown = serde_json::to_value(&plain).unwrap();
        assert!(shown.get("notes").is_none(), "{shown}");
        let validator = jsonschema::validator_for(&schema).unwrap();
        let misfits: Vec<String> = validator
            .iter_errors(&shown)
            .map(|e| e.to_string())
            .collect();
        assert!(misfits.is_empty(), "{misfits:?}");
    }

    #[test]
    fn payloads_are_shown_exactly() {
        assert!(matches!(Payload::decode(br#"{"a":1}"#), Payload::Json(_)));
        assert!(matches!(Payload::decode(b"plain text"), Payload::Text(t) if t == "plain text"));
        // A bare JSON scalar stays text, so "42" and 42 are not confused.
        assert!(matches!(Payload::decode(b"42"), Payload::Text(_)));
        assert!(matches!(Payload::decode(&[0xff, 0xfe, 0x00]), Payload::Base64(b) if b == "//4A"));
        // Floats keep their exact value; integers beyond 64 bits stay text.
        let Payload::Json(v) = Payload::decode(br#"{"ms":7.876891,"x":0.1}"#) else {
            panic!("json")
        };
        assert_eq!(v["ms"].as_f64(), Some(7.876891));
        assert_eq!(v.to_string(), r#"{"ms":7.876891,"x":0.1}"#);
        assert!(matches!(
            Payload::decode(br#"{"id":123456789012345678901234567890}"#),
            Payload::Text(_)
        ));
        assert!(
            matches!(Payload::decode(br#"{"n":1e300}"#), Payload::Text(_)),
            "an integral value past 2^53 may be a rounded integer: kept as text"
        );
    }
}
