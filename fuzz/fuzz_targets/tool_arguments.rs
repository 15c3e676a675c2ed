//! Tool arguments as agents send them, arbitrary: decoding for every tool,
//! the checks made before Kafka is asked (the scope check among them),
//! plan-id splitting, audit
//! redaction, and the decoding of message payloads. Never panics; redaction
//! never lets a payload through; payloads are shown exactly.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mcp_kafka_sidecar::scope::Scope;
use mcp_kafka_sidecar::tool_name::ToolName;
use mcp_kafka_sidecar::tools::{self, Payload, validate};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let tool = ToolName::ALL[usize::from(pick) % ToolName::ALL.len()];
    // Bytes that are not JSON arrive as a string: the wrong type for every tool.
    let args: Value = serde_json::from_slice(rest)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()));

    let decoded = tools::decode_arguments(tool, args.clone());
    // Every name is in the scope of everything; in the empty scope, a call
    // that decodes and names a topic is refused.
    assert!(tools::check_scope(tool, &Scope::everything(), &args).is_ok());
    let nothing = tools::check_scope(tool, &Scope::default(), &args);
    if decoded.is_ok() && args.get("topic").is_some_and(Value::is_string) {
        assert!(nothing.is_err(), "{tool} on {args} passed the empty scope");
    }
    if let Some(topic) = args.get("topic").and_then(Value::as_str) {
        let _ = validate::topic_name(topic);
    }
    if let Some(group) = args.get("group_id").and_then(Value::as_str) {
        let _ = validate::group_id(group);
    }
    let _ = mcp_kafka_sidecar::plan::split_plan_id(&mut args.clone());

    let redacted = mcp_kafka_sidecar::audit::redact(&args);
    for field in ["value", "key", "headers"] {
        if args.get(field).is_some() {
            assert!(
                redacted[field].get("sha256").is_some(),
                "redaction let the {field} through"
            );
        }
    }

    match Payload::decode(rest) {
        Payload::Json(v) => {
            let again: Value = serde_json::from_str(&v.to_string()).expect("shown JSON parses");
            assert_eq!(again, v, "JSON shown exactly");
        }
        Payload::Text(t) => assert_eq!(t.as_bytes(), rest),
        Payload::Base64(b) => assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64"),
            rest
        ),
    }
});
