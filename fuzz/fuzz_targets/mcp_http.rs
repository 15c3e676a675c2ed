//! MCP request bodies and headers, arbitrary, through the sidecar's own HTTP
//! router (authentication layer, body limit, rmcp's Streamable HTTP
//! service, the tool handler): never a panic, never a 5xx, and every
//! session an input opens is closed again (bounded memory).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use mcp_kafka_sidecar::config::SidecarConfig;
use mcp_kafka_sidecar::metrics::Metrics;
use mcp_kafka_sidecar::server::{KafkaMcp, Runtime};
use tower::ServiceExt;

/// A dev server without auth, fenced to a cluster it never reaches: every
/// tool call runs the whole call path (limits, environment rules, fence,
/// audit) and ends FENCED at once instead of waiting for Kafka. The
/// tool_arguments target fuzzes what comes after.
const CONFIG: &str = "server: {name: fuzz, environment: dev}
listen: {address: '127.0.0.1:8090'}
auth: {mode: none}
kafka: {bootstrapServers: ['127.0.0.1:9'], requestTimeoutMs: 100, expectedClusterId: never-reached}
tools: [cluster_status, list_topics, describe_topic, consume_messages, create_topic, publish_message]
limits: {callsPerSecond: 1000000, callBurst: 1000000, maxConsumeTimeoutMs: 100}
";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: Router,
    session: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let router = runtime.block_on(async {
            let config = SidecarConfig::parse(CONFIG).expect("fuzz config");
            let mcp = KafkaMcp::new(Runtime::start(config, None).expect("clients"), std::sync::Arc::new(Metrics::new()));
            mcp_kafka_sidecar::http::router(mcp, &[], tokio_util::sync::CancellationToken::new()).mcp
        });
        let initialize = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}}"#;
        let (status, session, _) = runtime.block_on(send(&router, initialize.to_vec(), Headers::NewSession));
        assert_eq!(status, 200, "initialize");
        let session = session.expect("a session id");
        runtime.block_on(send(&router, br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(), Headers::Session(&session)));
        Fixture { runtime, router, session }
    })
}

#[derive(Clone, Copy)]
enum Headers<'a> {
    Session(&'a str),
    NewSession,
    UnknownSession,
    WrongContentType(&'a str),
    WrongAccept(&'a str),
}

async fn send(
    router: &Router,
    body: Vec<u8>,
    headers: Headers<'_>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut request = axum::http::Request::post("/mcp").header("host", "127.0.0.1");
    let (content_type, accept) = match headers {
        Headers::WrongContentType(_) => ("text/plain", "application/json, text/event-stream"),
        Headers::WrongAccept(_) => ("application/json", "text/html"),
        _ => ("application/json", "application/json, text/event-stream"),
    };
    request = request
        .header("content-type", content_type)
        .header("accept", accept);
    match headers {
        Headers::Session(id) | Headers::WrongContentType(id) | Headers::WrongAccept(id) => {
            request = request
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-06-18");
        }
        Headers::UnknownSession => {
            request = request.header("mcp-session-id", "00000000-0000-0000-0000-000000000000")
        }
        Headers::NewSession => {}
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).expect("request"))
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // SSE answers end when the request's answer is sent; bound the wait anyway.
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect()).await;
    (
        status,
        session,
        body.ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let headers = match pick % 5 {
        0 | 1 => Headers::Session(&f.session),
        2 => Headers::NewSession,
        3 => Headers::UnknownSession,
        _ if pick & 0x80 == 0 => Headers::WrongContentType(&f.session),
        _ => Headers::WrongAccept(&f.session),
    };
    let (status, opened, answer) = f.runtime.block_on(send(&f.router, body.to_vec(), headers));
    assert!(
        status < 500,
        "HTTP {status} for {:?}: {}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&answer)
    );
    if let (Headers::NewSession, Some(id)) = (headers, opened) {
        let close = axum::http::Request::delete("/mcp")
            .header("host", "127.0.0.1")
            .header("mcp-session-id", id)
            .body(Body::empty())
            .expect("request");
        f.runtime
            .block_on(f.router.clone().oneshot(close))
            .expect("infallible");
    }
});
