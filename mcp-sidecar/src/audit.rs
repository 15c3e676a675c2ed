//! The audit trail: one JSON record per tool call, allowed or denied,
//! written as one line to its own stream (stdout over HTTP; stderr in stdio
//! mode, where stdout carries MCP), apart from the logs. Message payloads
//! and anything secret-looking in the arguments are replaced by a hash and
//! a length, so the record proves what was sent without repeating it.
//!
//! Optionally every record is also written to a Kafka topic ([`KafkaSink`])
//! with the idempotent acks=all producer. A change to Kafka is made only
//! while that topic can take records (checked right before), and its record
//! is awaited; other calls go on when the sink fails, counted in a metric.

use std::io::Write;
use std::sync::Arc;

use rdkafka::producer::FutureRecord;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Marks audit lines, so that a reader can tell them from log lines on a shared stream.
pub const RECORD_KIND: &str = "mcp-kafka-sidecar.audit/v1";

/// Argument names whose values are payloads or secrets.
const REDACTED_KEYS: [&str; 3] = ["value", "key", "headers"];
const SECRET_WORDS: [&str; 4] = ["password", "secret", "token", "credential"];

#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// For a person signed in with the identity provider: its issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// And the OAuth client they signed in through (the token's `azp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub kind: &'static str,
    pub time: String,
    /// The JSON-RPC request id, unique within the session; for a job, the
    /// request record's `topic/partition@offset`.
    pub request_id: String,
    pub session_id: Option<String>,
    /// `kafka` for a tool call taken from the job topic; absent for MCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// The job's jobId (calls via Kafka).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// None when the server runs without authentication (dev on loopback).
    pub subject: Option<Caller>,
    pub server: String,
    pub namespace: Option<String>,
    pub environment: String,
    pub cluster_id: Option<String>,
    /// The tool that ran (the RBAC verb), or the name a refused call gave.
    pub tool: String,
    /// The mcp-confluent name the client called, when `tool` ran as one
    /// native call of it (`toolNames: [confluent]`); `arguments` are then the
    /// native call's, or the client's when the call was refused before any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub called_as: Option<&'static str>,
    pub arguments: Value,
    /// `allow` or `deny`.
    pub decision: &'static str,
    pub reason: Option<String>,
    pub dry_run: bool,
    /// The plan a dry run made, or the plan an apply named.
    pub plan_id: Option<String>,
    /// For mutations: what changed, or would change in a dry run (the tool's result).
    pub diff: Option<Value>,
    /// `ok` or the error code.
    pub outcome: String,
    pub duration_ms: f64,
}

/// Where records go.
pub struct Auditor {
    to_stderr: bool,
}

impl Auditor {
    pub fn to_stdout() -> Self {
        Self { to_stderr: false }
    }

    pub fn to_stderr() -> Self {
        Self { to_stderr: true }
    }

    /// Writes one record as one line and returns it (for a durable sink).
    /// A failed write is logged, not hidden.
    pub fn record(&self, record: &AuditRecord) -> Option<Vec<u8>> {
        let line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "an audit record did not serialize");
                return None;
            }
        };
        let written = if self.to_stderr {
            let mut out = std::io::stderr().lock();
            out.write_all(&line).and_then(|_| out.write_all(b"\n"))
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(&line)
                .and_then(|_| out.write_all(b"\n"))
                .and_then(|_| out.flush())
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "writing an audit record failed");
        }
        Some(line)
    }
}

/// The audit topic on the served cluster.
pub struct KafkaSink {
    kafka: Arc<crate::kafka::Kafka>,
    topic: String,
}

impl KafkaSink {
    pub fn new(kafka: Arc<crate::kafka::Kafka>, topic: String) -> Self {
        Self { kafka, topic }
    }

    /// Whether the topic can take a record now: it exists and every
    /// partition has a leader. Asked right before a change to Kafka.
    pub async fn check(&self) -> Result<(), String> {
        let topic = self.topic.clone();
        let checked = self
            .kafka
            .blocking(move |k| {
                let metadata = k.metadata(Some(&topic))?;
                let found = metadata.topics().iter().find(|t| t.name() == topic);
                match found {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        match t.partitions().iter().find(|p| p.leader() < 0) {
                            Some(p) => Err(crate::error::ToolError::new(
                                crate::error::ErrorCode::KafkaUnavailable,
                                format!("partition {} has no leader", p.id()),
                            )),
                            None => Ok(()),
                        }
                    }
                    _ => Err(crate::error::ToolError::not_found(
                        "the topic does not exist",
                    )),
                }
            })
            .await;
        checked.map_err(|e| format!("audit topic {:?}: {}", self.topic, e.message))
    }

    /// Writes one record, keyed by `key`, and waits for acks=all.
    pub async fn send(&self, key: &str, line: &[u8]) -> Result<(), String> {
        let record = FutureRecord::to(&self.topic).key(key).payload(line);
        self.kafka
            .produce(&format!("audit topic {:?}", self.topic), record)
            .await
            .map(|_| ())
            .map_err(|e| e.message)
    }
}

/// The arguments as they may be kept: payloads and secret-looking values
/// become `{"sha256": <first 16 hex>, "length": <bytes>}`.
pub fn redact(args: &Value) -> Value {
    match args {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let lower = k.to_ascii_lowercase();
                let sensitive = REDACTED_KEYS.contains(&lower.as_str())
                    || SECRET_WORDS.iter().any(|w| lower.contains(w));
                out.insert(
                    k.clone(),
                    if sensitive { fingerprint(v) } else { redact(v) },
                );
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

fn fingerprint(v: &Value) -> Value {
    let bytes = match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    json!({ "sha256": hex, "length": bytes.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_and_secrets_are_hashed_not_kept() {
        let args = json!({"topic": "orders", "value": "card 4111-1111", "key": "k1", "headers": {"h": "v"},
                          "nested": {"saslPassword": "hunter2"}, "partitions": 3});
        let kept = redact(&args);
        let text = kept.to_string();
        for secret in ["4111", "k1", "hunter2", "\"h\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(kept["topic"], "orders");
        assert_eq!(kept["partitions"], 3);
        assert_eq!(kept["value"]["length"], 14);
        assert_eq!(
            kept["value"],
            redact(&json!({"value": "card 4111-1111"}))["value"],
            "stable: the same payload, the same hash"
        );
    }
}
