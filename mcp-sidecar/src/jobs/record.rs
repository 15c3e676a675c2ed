//! The job contract on the wire: what a request record holds (pure
//! parsing, every failure a typed refusal), and what a reply and a
//! dead-letter record hold. The token is read from its header here and
//! goes nowhere but to the authenticator: no reply, dead-letter record,
//! log line or audit record carries it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCode, ToolError};

/// The header with the caller's bearer token, as on HTTP: `Bearer <token>`.
pub const TOKEN_HEADER: &str = "authorization";
/// The header naming the reply topic (one of the server's reply topics).
pub const REPLY_TO_HEADER: &str = "replyTo";
/// Longest jobId accepted.
const MAX_JOB_ID: usize = 128;
/// Most bytes of a request's value a dead-letter record repeats.
const DEAD_LETTER_VALUE_BYTES: usize = 16 * 1024;

/// A request record's value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    job_id: Value,
    #[serde(default)]
    tool: Option<Value>,
    #[serde(default)]
    arguments: Option<Value>,
    /// RFC 3339: a job still waiting at this time is not run (TIMEOUT).
    #[serde(default)]
    deadline: Option<Value>,
}

/// A job to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: String,
    pub tool: String,
    pub arguments: Value,
    pub deadline: Option<jiff::Timestamp>,
}

/// What a request record is.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Job(Job),
    /// It names a usable jobId but cannot run: answered with `error`.
    Refused {
        job_id: String,
        tool: String,
        error: ToolError,
    },
    /// No usable jobId: nothing to answer to, so it is dead-lettered.
    Unusable(ToolError),
}

impl Parsed {
    /// The jobId to answer to, if there is one.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Parsed::Job(job) => Some(&job.job_id),
            Parsed::Refused { job_id, .. } => Some(job_id),
            Parsed::Unusable(_) => None,
        }
    }
}

/// Whether `id` can key a reply and the journal: 1 to 128 of
/// `[A-Za-z0-9._:/-]` (UUIDs, ULIDs, `agent-1:42`); never starting with
/// `@`, which the journal keeps for records without one.
fn job_id_problem(id: &str) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-');
    if id.is_empty() || id.len() > MAX_JOB_ID || !id.chars().all(ok_char) {
        return Some(format!(
            "jobId must be 1 to {MAX_JOB_ID} of letters, digits, '.', '_', ':', '/', '-'"
        ));
    }
    None
}

/// Parses a request record's value.
pub fn parse(value: Option<&[u8]>) -> Parsed {
    let unusable = |m: String| Parsed::Unusable(ToolError::invalid(m));
    let Some(bytes) = value else {
        return unusable(
            "the record has no value; a job is a JSON object {jobId, tool, arguments, deadline?}"
                .into(),
        );
    };
    // The jobId first, so that a job with a bad field still gets a reply.
    let object: serde_json::Map<String, Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return unusable("the value is not a JSON object".into()),
        Err(e) => return unusable(format!("the value is not JSON: {e}")),
    };
    let job_id = match object.get("jobId") {
        Some(Value::String(id)) => match job_id_problem(id) {
            None => id.clone(),
            Some(problem) => return unusable(problem),
        },
        Some(_) => return unusable("jobId must be a string".into()),
        None => return unusable("the value has no jobId".into()),
    };
    let tool = match object.get("tool") {
        Some(Value::String(t)) => t.clone(),
        _ => String::new(),
    };
    let refuse = |message: String| Parsed::Refused {
        job_id: job_id.clone(),
        tool: tool.clone(),
        error: ToolError::invalid(message),
    };
    if object
        .keys()
        .any(|k| k.to_ascii_lowercase().contains("token"))
    {
        // Said without repeating it; the value is not echoed anywhere.
        return refuse(format!(
            "a job's value must not carry a token: send it in the {TOKEN_HEADER:?} header"
        ));
    }
    let wire: Wire = match serde_json::from_value(Value::Object(object.clone())) {
        Ok(wire) => wire,
        Err(e) => {
            return refuse(format!(
                "the job is not {{jobId, tool, arguments, deadline?}}: {e}"
            ));
        }
    };
    if tool.is_empty() {
        return refuse("the job names no tool (a string)".into());
    }
    let arguments = match wire.arguments {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(Value::Object(map)) => Value::Object(map),
        Some(_) => return refuse("arguments must be a JSON object".into()),
    };
    let deadline = match wire.deadline {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => Some(t),
            // Not repeated: the refusal says nothing the record carried.
            Err(_) => return refuse("deadline is not an RFC 3339 time".into()),
        },
        Some(_) => return refuse("deadline must be an RFC 3339 time (a string)".into()),
    };
    Parsed::Job(Job {
        job_id,
        tool,
        arguments,
        deadline,
    })
}

/// The bearer token of a request record's `authorization` header
/// (`Bearer <token>`), if it has one that is well formed.
pub fn bearer(header: Option<&[u8]>) -> Option<String> {
    let text = std::str::from_utf8(header?).ok()?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Where a job's reply goes: the `replyTo` header's topic if it is one of
/// `allowed`, the first of them if the header is absent. A header naming
/// another topic is refused (answered on the default topic): a job can
/// never make the sidecar write anywhere else.
pub fn reply_topic<'a>(
    header: Option<&[u8]>,
    allowed: &'a [String],
) -> (&'a str, Option<ToolError>) {
    let default = allowed.first().map_or("", String::as_str);
    let Some(raw) = header else {
        return (default, None);
    };
    match std::str::from_utf8(raw)
        .ok()
        .and_then(|name| allowed.iter().find(|t| *t == name))
    {
        Some(topic) => (topic, None),
        None => (
            default,
            Some(ToolError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "replyTo names a topic this server does not reply to; allowed: {}",
                    allowed.join(", ")
                ),
            )),
        ),
    }
}

/// A reply: `result` is exactly the tool's structured output.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply<'a> {
    pub job_id: &'a str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a ToolError>,
    pub started_at: String,
    pub finished_at: String,
}

impl<'a> Reply<'a> {
    pub fn new(
        job_id: &'a str,
        answer: &'a Result<Value, ToolError>,
        started_at: jiff::Timestamp,
    ) -> Self {
        Self {
            job_id,
            ok: answer.is_ok(),
            result: answer.as_ref().ok(),
            error: answer.as_ref().err(),
            started_at: started_at.to_string(),
            finished_at: jiff::Timestamp::now().to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A dead-letter record: why, where the record was, and its value (capped,
/// base64). Never its headers' values: one of them is the token.
pub fn dead_letter(
    reason: &ToolError,
    topic: &str,
    partition: i32,
    offset: i64,
    value: Option<&[u8]>,
    header_names: Vec<String>,
) -> Value {
    use base64::Engine;
    let value = value.unwrap_or_default();
    let kept = &value[..value.len().min(DEAD_LETTER_VALUE_BYTES)];
    serde_json::json!({
        "error": reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "receivedAt": jiff::Timestamp::now().to_string(),
        "valueBase64": base64::engine::general_purpose::STANDARD.encode(kept),
        "valueBytes": value.len(),
        "valueTruncated": kept.len() < value.len(),
        "headers": header_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Parsed {
        parse(Some(v.to_string().as_bytes()))
    }

    #[test]
    fn a_job_parses_with_defaults() {
        let Parsed::Job(job) = parse_json(json!({"jobId": "j-1", "tool": "list_topics"})) else {
            panic!()
        };
        assert_eq!(job.arguments, json!({}));
        assert_eq!(job.deadline, None);
        let Parsed::Job(job) = parse_json(json!({"jobId": "a:b/c.d_e-1", "tool": "describe_topic",
            "arguments": {"topic": "t"}, "deadline": "2026-12-01T18:00:00Z"}))
        else {
            panic!()
        };
        assert_eq!(job.arguments, json!({"topic": "t"}));
        assert_eq!(job.deadline.unwrap().to_string(), "2026-12-01T18:00:00Z");
    }

    #[test]
    fn without_a_usable_job_id_a_record_is_dead_lettered() {
        for value in [
            None,
            Some(b"not json".as_slice()),
            Some(b"[1]".as_slice()),
            Some(br#"{"tool": "list_topics"}"#.as_slice()),
            Some(br#"{"jobId": 7, "tool": "list_topics"}"#.as_slice()),
            Some(br#"{"jobId": "", "tool": "list_topics"}"#.as_slice()),
            Some(br#"{"jobId": "@3", "tool": "list_topics"}"#.as_slice()),
            Some(br#"{"jobId": "a b", "tool": "list_topics"}"#.as_slice()),
        ] {
            match parse(value) {
                Parsed::Unusable(e) => assert_eq!(e.code, ErrorCode::InvalidArgument),
                other => panic!("{value:?}: {other:?}"),
            }
        }
        let long = "x".repeat(MAX_JOB_ID + 1);
        assert!(matches!(
            parse_json(json!({"jobId": long, "tool": "t"})),
            Parsed::Unusable(_)
        ));
    }

    #[test]
    fn a_bad_field_is_answered_to_its_job_id() {
        let cases = [
            json!({"jobId": "j", "tool": "list_topics", "arguments": [1]}),
            json!({"jobId": "j", "tool": "list_topics", "deadline": "tomorrow"}),
            json!({"jobId": "j", "tool": "list_topics", "deadline": 17}),
            json!({"jobId": "j", "tool": "list_topics", "extra": 1}),
            json!({"jobId": "j"}),
            json!({"jobId": "j", "tool": 3}),
        ];
        for case in cases {
            match parse_json(case.clone()) {
                Parsed::Refused { job_id, error, .. } => {
                    assert_eq!(job_id, "j");
                    assert_eq!(error.code, ErrorCode::InvalidArgument, "{case}");
                }
                other => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_token_in_the_value_is_refused_and_not_repeated() {
        let canary = "eyJhbGciOi.canary.sig";
        let Parsed::Refused { error, .. } =
            parse_json(json!({"jobId": "j", "tool": "list_topics", "bearerToken": canary}))
        else {
            panic!()
        };
        assert!(!error.message.contains(canary), "{error}");
        assert!(error.message.contains("authorization"), "{error}");
    }

    #[test]
    fn the_token_comes_from_its_header_as_on_http() {
        assert_eq!(bearer(Some(b"Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer(Some(b"bearer abc ")).as_deref(), Some("abc"));
        assert_eq!(bearer(Some(b"abc")), None);
        assert_eq!(bearer(Some(b"Bearer ")), None);
        assert_eq!(bearer(Some(&[0xff, 0xfe])), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn replies_go_only_to_allowed_topics() {
        let allowed = vec!["r1".to_string(), "r2".to_string()];
        assert_eq!(reply_topic(None, &allowed), ("r1", None));
        assert_eq!(reply_topic(Some(b"r2"), &allowed), ("r2", None));
        let (topic, refusal) = reply_topic(Some(b"_mcp_audit"), &allowed);
        assert_eq!(topic, "r1");
        assert_eq!(refusal.unwrap().code, ErrorCode::PermissionDenied);
    }

    #[test]
    fn a_reply_has_result_or_error() {
        let started = jiff::Timestamp::now();
        let ok = Ok(json!({"topics": []}));
        let reply = Reply::new("j", &ok, started).to_json();
        assert_eq!(reply["ok"], true);
        assert_eq!(reply["result"], json!({"topics": []}));
        assert!(reply.get("error").is_none() && reply["startedAt"].is_string());
        let failed = Err(ToolError::not_found("no topic t"));
        let reply = Reply::new("j", &failed, started).to_json();
        assert_eq!(reply["ok"], false);
        assert_eq!(reply["error"]["code"], "NOT_FOUND");
        assert_eq!(reply["error"]["retriable"], false);
        assert!(reply.get("result").is_none());
    }

    #[test]
    fn a_dead_letter_repeats_header_names_and_a_capped_value() {
        let big = vec![b'x'; DEAD_LETTER_VALUE_BYTES + 10];
        let d = dead_letter(
            &ToolError::invalid("the value is not JSON"),
            "req",
            2,
            41,
            Some(&big),
            vec!["authorization".into()],
        );
        assert_eq!(d["valueTruncated"], true);
        assert_eq!(d["valueBytes"], big.len());
        assert_eq!(d["headers"], json!(["authorization"]));
        assert_eq!(
            (d["partition"].clone(), d["offset"].clone()),
            (json!(2), json!(41))
        );
    }
}
