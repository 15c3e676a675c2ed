//! Schema-aware payloads (`e2e/bench SECONDS schemas`): a 10-message peek
//! of Avro records (Confluent's wire format), decoded by a sidecar with
//! the ground's Schema Registry, next to the same peek by a sidecar without
//! one (the records shown as bytes), on the same topic in the same run.
//! The registry is asked once per schema id; the decoded cells run with
//! warm caches (the warm-up call fills them).

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use serde_json::{Value, json};

use super::{
    Args, Figures, Launch, Protocol, Ready, Session, answer_result, create_topic, mcp_calls,
    start_sidecar,
};

/// An order event: the shape of record the issue names, about 150 bytes
/// encoded (a long, strings, a double, an array of records, a timestamp).
const SCHEMA: &str = r#"{"type": "record", "name": "Order", "namespace": "bench.shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "customer", "type": "string"},
  {"name": "amount", "type": "double"},
  {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "GBP"]}},
  {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
    {"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"}]}}},
  {"name": "note", "type": ["null", "string"], "default": null},
  {"name": "created", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

fn order(n: i64) -> Value {
    json!({
        "id": 9_007_199_254_740_993_i64 + n,
        "customer": format!("customer-{n:04}"),
        "amount": 19.99 + n as f64,
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": format!("SKU-{n}"), "quantity": 1}],
        "note": if n % 2 == 0 { Value::Null } else { json!("gift") },
        "created": 1_764_600_000_000_i64 + n,
    })
}

fn config(a: &Args, name: &str, tools: &[&str], registry: Option<&str>) -> Value {
    let mut config = json!({
        "server": {"name": name, "environment": "dev"},
        "kafka": {"bootstrapServers": [a.bootstrap]},
        "tools": tools,
        "auth": {"mode": "none"},
        "limits": {"callsPerSecond": 1_000_000, "callBurst": 1_000_000},
    });
    if let Some(url) = registry {
        config["schemaRegistry"] = json!({"url": url});
    }
    config
}

/// The answer's structured content, or a panic naming the call: the
/// setup must work for the figures to mean anything.
async fn must(session: &mut Session, tool: &str, args: &Value) -> Value {
    let answer = session.call_raw(tool, args).await;
    match answer_result(&answer) {
        Some(result) if result["isError"] != json!(true) => result["structuredContent"].clone(),
        _ => panic!("{tool}: {}", String::from_utf8_lossy(&answer)),
    }
}

fn row(label: &str, workers: usize, f: &Figures) {
    let errors = f.errors_note();
    println!(
        "{:<40} {:>4} {:>9.3} {:>9.3} {:>8.0} {:>9.3} {:>9.3}{errors}",
        label,
        workers,
        f.p50_ms,
        f.p99_ms,
        f.per_second,
        f.server_cpu_ms_per_call,
        f.cpu_ms_per_call
    );
}

pub async fn schema_figures(a: &Args, admin: &AdminClient<DefaultClientContext>, registry: &str) {
    let topic = format!("bench-avro-{}", std::process::id());
    create_topic(admin, &topic).await;
    let launch = |config| Launch::Config {
        config,
        kubeconfig: "",
    };
    let decoding = config(
        a,
        "bench-schemas",
        &["consume_messages", "publish_message", "register_schema"],
        Some(registry),
    );
    let (decoder, base, _) = start_sidecar(a, launch(decoding), Ready::Readyz).await;
    let url = format!("{base}/mcp");
    let mut session = Session::open(&url).await;
    let registered = must(
        &mut session,
        "register_schema",
        &json!({"subject": format!("{topic}-value"), "schema": SCHEMA, "schema_type": "AVRO"}),
    )
    .await;
    let schema_id = registered["registered"]["id"].clone();
    assert!(
        schema_id.is_u64(),
        "register_schema registered it: {registered}"
    );
    for n in 0..10 {
        must(
            &mut session,
            "publish_message",
            &json!({"topic": topic, "key": format!("order-{n}"), "value": order(n).to_string(),
                    "partition": 0, "value_schema": {}}),
        )
        .await;
    }
    let (raw, raw_base, _) = start_sidecar(
        a,
        launch(config(a, "bench-raw", &["consume_messages"], None)),
        Ready::Readyz,
    )
    .await;
    let raw_url = format!("{raw_base}/mcp");
    let args = json!({"topic": topic, "from": "earliest", "max_messages": 10});
    // One decoded peek, checked: every value decoded, with the schema id.
    let peek = must(&mut session, "consume_messages", &args).await;
    let messages = peek["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 10, "the peek shows the 10 records: {peek}");
    assert!(
        messages
            .iter()
            .all(|m| m["value_schema"]["schema_id"] == schema_id),
        "every value decoded with the registered schema: {peek}"
    );
    println!();
    println!(
        "10-message peek of Avro records (schema id {schema_id}), decoded vs raw, warm schema caches"
    );
    println!(
        "{:<40} {:>4} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "", "conc", "p50 ms", "p99 ms", "/s", "srv cpu", "cpu/call"
    );
    for workers in [1usize, 16] {
        let decoded = mcp_calls(
            (&url, decoder.0.id()),
            Protocol::Sessions,
            workers,
            a.seconds,
            "consume_messages",
            &args,
        )
        .await;
        let plain = mcp_calls(
            (&raw_url, raw.0.id()),
            Protocol::Sessions,
            workers,
            a.seconds,
            "consume_messages",
            &args,
        )
        .await;
        row("decoded (Avro to JSON)", workers, &decoded);
        row("raw (no registry: bytes)", workers, &plain);
        println!(
            "  decoded/raw: p50 {:.2}x, sidecar CPU per call {:.2}x",
            decoded.p50_ms / plain.p50_ms,
            decoded.server_cpu_ms_per_call / plain.server_cpu_ms_per_call
        );
    }
    admin
        .delete_topics(&[&topic], &rdkafka::admin::AdminOptions::new())
        .await
        .ok();
}
